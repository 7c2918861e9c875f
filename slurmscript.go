package main

// The batch script of a SLURM job: it runs the plugin's image with the
// node's container runtime, then records how the container ended
// (slurmrecord.go). Every value that comes from the job is one
// single-quoted shell word (shQuote), so no argument, env value or path
// can change what the script does.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// renderSlurmScript checks what the script cannot carry and returns it
// rendered. The runtime binds each directory as "source:target:ro" (docker
// -v, apptainer --bind), so a ':' would split it; apptainer's --bind takes
// a comma-separated list, so a ',' would too.
func renderSlurmScript(cfg *config, j *jobSpec, records string) (string, error) {
	if err := checkScriptJob(j, "SLURM"); err != nil {
		return "", err
	}
	bad := ":"
	if rt := cfg.Slurm.Runtime; rt != "docker" && rt != "podman" {
		bad = ":,"
	}
	for _, d := range []struct{ field, dir string }{{"input_dir", j.InputDir}, {"output_dir", j.OutputDir}} {
		if strings.ContainsAny(d.dir, "\n\r") {
			return "", fieldError(d.field, fmt.Sprintf("%q must not contain a line break", d.dir))
		}
		if strings.ContainsAny(d.dir, bad) {
			return "", fieldError(d.field, fmt.Sprintf("%q: with SLURM_CONTAINER_RUNTIME=%s a job directory must not contain any of %q (the runtime's bind syntax)", d.dir, cfg.Slurm.Runtime, bad))
		}
	}
	return slurmScript(cfg, j, slurmRecord{jid: j.JID, dir: records + "/" + j.JID}), nil
}

// slurmScript is the script's text. The container is named after the
// SLURM job, so the script can stop it when SLURM stops the job (cancel,
// time limit): a Docker or Podman container is the engine's child, not
// the script's, and would outlive it.
func slurmScript(cfg *config, j *jobSpec, rec slurmRecord) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("#!/bin/sh\n")
	w("# pman: one ChRIS job. Every value of the job below is a single-quoted word.\n")
	// Files made by the script are writable by its user alone, or pman
	// would not believe its end report.
	w("umask 022\n")
	w("rec=%s\n", shQuote(rec.runDir()))
	w("in=%s\n", shQuote(hostPath(cfg.StoreBase, j.InputDir)))
	w("out=%s\n", shQuote(hostPath(cfg.StoreBase, j.OutputDir)))
	// The job id alone is not unique: slurmctld numbers again from 1 when
	// its state is lost, and a container of an earlier job 18 may remain.
	w("name=\"pman-slurm-${SLURM_JOB_ID:-$$}-%s\"\n", slurmContainerTag(j.JID))
	w("now() { date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ; }\n")
	w("started=$(now)\n")
	// finish CODE OOM SIGNAL writes end.json at once (write, then rename).
	w("finish() {\n")
	w("  printf '{\"slurm_job_id\":%%d,\"exit_code\":%%d,\"oom_killed\":%%s,\"signal\":\"%%s\",\"start\":\"%%s\",\"end\":\"%%s\"}\\n' \"${SLURM_JOB_ID:-0}\" \"$1\" \"$2\" \"$3\" \"$started\" \"$(now)\" >\"$rec/.end.json.tmp\" &&\n")
	w("    mv -f \"$rec/.end.json.tmp\" \"$rec/end.json\"\n")
	w("}\n")
	w("if [ ! -d \"$in\" ]; then\n")
	w("  echo \"pman: the input directory $in does not exist on $(hostname)\" >&2\n")
	w("  finish 2 false ''; exit 2\n")
	w("fi\n")
	w("mkdir -p \"$out\" || { finish 2 false ''; exit 2; }\n")

	rt := cfg.Slurm.Runtime
	var argv []string
	switch rt {
	case "docker", "podman":
		argv = dockerArgs(cfg, j)
		if j.GPULimit > 0 {
			// The GPUs SLURM gave the job, or as many when it names none;
			// docker reads a device list in inner quotes.
			w("gpus=%s\n", shQuote(strconv.Itoa(j.GPULimit)))
			w("[ -z \"${CUDA_VISIBLE_DEVICES:-}\" ] || gpus=\"\\\"device=$CUDA_VISIBLE_DEVICES\\\"\"\n")
		}
		w("stop() {\n  trap '' TERM INT\n  %s rm -f \"$name\" >/dev/null 2>&1\n  finish 143 false TERM; exit 143\n}\n", rt)
	default: // apptainer, singularity
		prefix := strings.ToUpper(rt) + "ENV_"
		for _, e := range j.Env {
			k, v, _ := strings.Cut(e, "=")
			// The runtime passes <RUNTIME>ENV_K into the container as K,
			// verbatim; --env would split its value at commas.
			w("export %s%s=%s\n", prefix, k, shQuote(v))
		}
		argv = apptainerArgs(cfg, j)
		w("stop() {\n  trap '' TERM INT\n  kill \"$pid\" 2>/dev/null\n  finish 143 false TERM; exit 143\n}\n")
	}
	w("trap stop TERM INT\n")
	// In the background, so that the trap runs as soon as SLURM signals.
	w("%s &\n", strings.Join(argv, " "))
	w("pid=$!\n")
	w("wait \"$pid\"\n")
	w("code=$?\n")
	if rt == "docker" || rt == "podman" {
		w("oom=$(%s inspect --format '{{.State.OOMKilled}}' \"$name\" 2>/dev/null)\n", rt)
		w("%s rm -f \"$name\" >/dev/null 2>&1\n", rt)
		w("[ \"$oom\" = true ] || oom=false\n")
	} else {
		w("oom=false\n")
	}
	w("finish \"$code\" \"$oom\" ''\n")
	w("exit \"$code\"\n")
	return b.String()
}

// dockerArgs returns the docker (or podman) command line of a job. Words the
// script expands ("$name", "$in") are double-quoted; every value of the job
// is shQuoted.
func dockerArgs(cfg *config, j *jobSpec) []string {
	rt := cfg.Slurm.Runtime
	a := []string{rt, "run", "--name", `"$name"`,
		"-v", `"$in:` + incomingDir + `:ro"`,
		"-v", `"$out:` + outgoingDir + `:rw"`}
	if !cfg.IgnoreLimits {
		if j.MemoryLimit > 0 {
			m := strconv.Itoa(j.MemoryLimit) + "m"
			a = append(a, "--memory", m, "--memory-swap", m)
		}
		if j.CPULimit > 0 {
			a = append(a, "--cpus", strconv.FormatFloat(float64(j.CPULimit*j.Workers)/1000, 'f', -1, 64))
		}
	}
	if cfg.ShmSizeMiB > 0 {
		a = append(a, "--shm-size", strconv.Itoa(cfg.ShmSizeMiB)+"m")
	}
	// As the Docker backend's containers (hardening.go).
	a = append(a, "--security-opt", noNewPrivileges)
	if cfg.PidsLimit > 0 {
		a = append(a, "--pids-limit", strconv.Itoa(cfg.PidsLimit))
	}
	if j.GPULimit > 0 {
		a = append(a, "--gpus", `"$gpus"`)
	}
	user, groups := pickUser(cfg.ContainerUser)
	if user != "" {
		a = append(a, "--user", user)
	}
	for _, g := range groups {
		a = append(a, "--group-add", g)
	}
	labels := jobLabels(cfg, j.JID)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		a = append(a, "--label", shQuote(k+"="+labels[k]))
	}
	for _, e := range j.Env {
		a = append(a, "-e", shQuote(e))
	}
	if len(j.Cmd) > 0 {
		a = append(a, "--entrypoint", shQuote(j.Cmd[0]), shQuote(j.Image))
		for _, c := range j.Cmd[1:] {
			a = append(a, shQuote(c))
		}
	} else {
		a = append(a, shQuote(j.Image))
	}
	return a
}

// apptainerArgs is the apptainer (or singularity) command line of a job:
// a clean environment but the job's, its own /tmp and home, and the two
// directories bound. Resources are SLURM's to enforce (its cgroups).
func apptainerArgs(cfg *config, j *jobSpec) []string {
	img := j.Image
	if !strings.Contains(img, "://") {
		img = "docker://" + img
	}
	a := []string{cfg.Slurm.Runtime, "exec", "--containall", "--cleanenv", "--pwd", "/tmp",
		"--bind", `"$in:` + incomingDir + `:ro"`,
		"--bind", `"$out:` + outgoingDir + `:rw"`}
	if j.GPULimit > 0 {
		a = append(a, "--nv")
	}
	a = append(a, shQuote(img))
	for _, c := range j.Cmd {
		a = append(a, shQuote(c))
	}
	return a
}

// slurmContainerTag returns what makes the container name of jid's job
// unique beside the SLURM job id: a hash, as a jid may hold any character.
func slurmContainerTag(jid string) string { return jidHash(jid)[:12] }
