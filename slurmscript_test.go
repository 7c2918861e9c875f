package main

// The batch script of slurmscript.go, through a real shell with stand-in
// runtimes.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeRuntime puts an executable named rt first in PATH that writes its
// arguments, NUL-separated, to args, and the values of APPTAINERENV_ and
// SINGULARITYENV_ HOME and WEIRD to env; "inspect" answers "false".
func fakeRuntime(t *testing.T, rt string) (path, args, env string) {
	t.Helper()
	bin := t.TempDir()
	args, env = filepath.Join(bin, "args"), filepath.Join(bin, "env")
	script := fmt.Sprintf(`#!/bin/sh
case "$1" in
inspect) echo false; exit 0;;
rm) exit 0;;
esac
for a; do printf '%%s\0' "$a"; done >%s
printf '%%s\0' "${APPTAINERENV_HOME-unset}" "${APPTAINERENV_WEIRD-unset}" "${SINGULARITYENV_HOME-unset}" "${SINGULARITYENV_WEIRD-unset}" >%s
exit 0
`, shQuote(args), shQuote(env))
	if err := os.WriteFile(filepath.Join(bin, rt), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin + ":" + os.Getenv("PATH"), args, env
}

// runScript runs a job's batch script with sh as SLURM would, and answers
// the runtime's argument list.
func runScript(t *testing.T, script, path, argsFile string) []string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "script")
	os.WriteFile(f, []byte(script), 0o755)
	cmd := exec.Command("sh", f)
	cmd.Env = []string{"PATH=" + path, "SLURM_JOB_ID=7", "HOME=/nonexistent"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the script failed: %v\n%s\nscript:\n%s", err, out, script)
	}
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatalf("the runtime was not run: %v\nscript:\n%s", err, script)
	}
	words := strings.Split(string(b), "\x00")
	return words[:len(words)-1]
}

// hostileStore is a STOREBASE and directories that the shell would
// mangle if they were not quoted.
func hostileStore(t *testing.T) (store, in, out string) {
	store = filepath.Join(t.TempDir(), `st ore $(id) 'q' "dq" $HOME `+"`id`")
	in, out = `feed $1/in 'x'`, `feed $1/out "y" ;rm`
	for _, d := range []string{in, out} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(slurmRecordsDir(store), 0o777)
	return store, in, out
}

func TestSlurmScriptHostileArgs(t *testing.T) {
	for _, rt := range slurmRuntimes {
		t.Run(rt, func(t *testing.T) {
			path, argsFile, envFile := fakeRuntime(t, rt)
			store, in, out := hostileStore(t)
			cfg := &config{StoreBase: store, Slurm: slurmConfig{Runtime: rt}}
			for _, arg := range wdlHostileArgs {
				t.Run(fmt.Sprintf("%q", arg), func(t *testing.T) {
					jid := "j " + arg
					if checkJID(jid) != "" {
						jid = "j"
					}
					rec := slurmRecord{jid: jid, dir: filepath.Join(slurmRecordsDir(store), jid)}
					os.MkdirAll(rec.runDir(), 0o755)
					cmd := []string{"/usr/local/bin/plugin", "--opt", arg, arg + arg, outgoingDir}
					j := &jobSpec{JID: jid, Image: "fnndsc/pl-x:1.0", Cmd: cmd, Env: []string{"WEIRD=" + arg, "HOME=/tmp"},
						InputDir: in, OutputDir: out, Workers: 1, CPULimit: 1000, MemoryLimit: 64}
					got := runScript(t, slurmScript(cfg, j, rec), path, argsFile)

					var wantCmd []string
					switch rt {
					case "docker", "podman":
						i := slices.Index(got, "--entrypoint")
						if i < 0 || len(got) < i+2 {
							t.Fatalf("no --entrypoint in %q", got)
						}
						wantCmd = append([]string{got[i+1]}, got[i+3:]...)
						if got[i+2] != j.Image {
							t.Errorf("arg %q: image %q; want %q", arg, got[i+2], j.Image)
						}
						for _, e := range j.Env {
							if k := slices.Index(got, e); k < 1 || got[k-1] != "-e" {
								t.Errorf("arg %q: no -e %q in %q", arg, e, got)
							}
						}
					default:
						k := slices.Index(got, "docker://"+j.Image)
						if k < 0 {
							t.Fatalf("no image in %q", got)
						}
						wantCmd = got[k+1:]
						env, _ := os.ReadFile(envFile)
						want := "/tmp\x00" + arg + "\x00unset\x00unset\x00"
						if rt == "singularity" {
							want = "unset\x00unset\x00/tmp\x00" + arg + "\x00"
						}
						if string(env) != want {
							t.Errorf("arg %q: the runtime's HOME, WEIRD = %q; want %q", arg, env, want)
						}
					}
					if !slices.Equal(wantCmd, cmd) {
						t.Errorf("arg %q: the container runs %q; want %q", arg, wantCmd, cmd)
					}
					for _, bind := range []string{filepath.Join(store, in) + ":" + incomingDir + ":ro", filepath.Join(store, out) + ":" + outgoingDir + ":rw"} {
						if !slices.Contains(got, bind) {
							t.Errorf("arg %q: no bind %q in %q", arg, bind, got)
						}
					}
					if b, err := os.ReadFile(filepath.Join(rec.runDir(), "end.json")); err != nil || !bytes.Contains(b, []byte(`"exit_code":0`)) {
						t.Errorf("arg %q: end.json = %s, %v; want exit code 0", arg, b, err)
					}
					os.RemoveAll(rec.dir)
				})
			}
		})
	}
}

func TestSlurmScriptDockerFlags(t *testing.T) {
	cfg := &config{StoreBase: "/store", ShmSizeMiB: 128, JobLabels: map[string]string{"team": "fnndsc"},
		ContainerUser: userSpec{UID: idRange{Set: true, Lo: 1001, Hi: 1001}, GID: idRange{Set: true}}, Slurm: slurmConfig{Runtime: "docker"}}
	j := &jobSpec{JID: "j", Image: "img", Cmd: []string{"run"}, Workers: 2, CPULimit: 1500, MemoryLimit: 100, GPULimit: 1, InputDir: "a", OutputDir: "b"}
	got := strings.Join(dockerArgs(cfg, j), " ")
	for _, want := range []string{"--memory 100m --memory-swap 100m", "--cpus 3", "--shm-size 128m", `--gpus "$gpus"`, "--user 1001", "--group-add 0", "--label 'org.chrisproject.pman.jid=j' --label 'team=fnndsc'"} {
		if !strings.Contains(got, want) {
			t.Errorf("docker command %s; want %q in it", got, want)
		}
	}
	cfg.IgnoreLimits = true
	if got := strings.Join(dockerArgs(cfg, j), " "); strings.Contains(got, "--memory") || strings.Contains(got, "--cpus") {
		t.Errorf("IGNORE_LIMITS: docker command %s; want no --memory, no --cpus", got)
	}
}

func TestRenderSlurmScriptRefuses(t *testing.T) {
	ok := jobSpec{JID: "j", Image: "img", Cmd: []string{"run"}, InputDir: "a", OutputDir: "b", Workers: 1}
	tests := []struct {
		name    string
		runtime string
		field   string // "" when the job is accepted
		edit    func(j *jobSpec)
	}{
		{"image", "docker", "image", func(j *jobSpec) { j.Image = "img; rm -rf /" }},
		{"env name", "docker", "env", func(j *jobSpec) { j.Env = []string{"A-B=1"} }},
		{"env NUL", "docker", "env", func(j *jobSpec) { j.Env = []string{"A=x\x00y"} }},
		{"args NUL", "docker", "args", func(j *jobSpec) { j.Cmd = []string{"a\x00b"} }},
		{"line break", "docker", "output_dir", func(j *jobSpec) { j.OutputDir = "a\nb" }},
		// -v and --bind are "source:target:ro": a ':' splits them.
		{"':' with docker", "docker", "input_dir", func(j *jobSpec) { j.InputDir = "home/chris/uploads/scan 10:30" }},
		{"':' with apptainer", "apptainer", "output_dir", func(j *jobSpec) { j.OutputDir = "a:b" }},
		// --bind is a comma-separated list; docker's -v is not.
		{"',' with apptainer", "apptainer", "input_dir", func(j *jobSpec) { j.InputDir = "a,b" }},
		{"',' with docker", "docker", "", func(j *jobSpec) { j.InputDir = "a,b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config{StoreBase: "/store", Slurm: slurmConfig{Runtime: tt.runtime}}
			j := ok
			tt.edit(&j)
			_, err := renderSlurmScript(cfg, &j, "/store/.pman/slurm")
			if tt.field == "" {
				if err != nil {
					t.Errorf("%+v: %v; want it accepted", j, err)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.kind != eInvalid || ae.fields[tt.field] == "" {
				t.Errorf("%+v: %v; want a 400 on %s", j, err, tt.field)
			}
		})
	}
}
