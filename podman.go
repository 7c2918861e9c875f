package main

// Podman's Docker-compatible API (`podman system service`) runs the Docker
// backend unchanged: CONTAINER_ENV=podman is an alias of docker. Where
// Podman answers differently, the Docker backend copes here. Observed with
// Podman 4.3.1 (Debian 12) beside Docker 20.10:
//
//   - name conflict at create: Docker 409; Podman 500 "... that name is
//     already in use" (nameInUse).
//   - states: Podman also reports "stopped" (exited, cleanup pending),
//     "configured" and "initialized" (not started), "stopping"
//     (containerStatus).
//   - OOMKilled: never set by Podman 4.3 on cgroup v1 (conmon 2.1.6 writes
//     its "oom" file into the service's working directory, and Podman
//     does not read it there); the job exits 137 (containerStatus).
//   - Config.Image: Docker keeps the name as given; Podman answers it
//     normalized ("docker.io/library/x:latest", "localhost/x:latest"), so
//     the job keeps its image in a label (imageLabel).
//   - a missing bind source (Mounts or Binds): Docker refuses the create;
//     Podman creates the directory, empty, owned by root (storage.go's
//     missingInput refuses a missing input directory first, on both).
//   - GPUs: Docker fails the start without a GPU driver; Podman ignores
//     DeviceRequests (but CDI ones in newer versions) and runs the job
//     without GPUs (gpu_limit is refused on Podman).
//   - logs with tail: Podman before 4.7 loses or misplaces a line written
//     in pieces (containers/podman#19545), so the whole log is read and
//     cut here (tailLines).
//   - pull of an unreachable registry: Docker answers 500 at once; Podman
//     answers 200 and the error inside the stream, without a code
//     (drainPull reads both).
//   - StartedAt: Podman records it when its start call returns, so a
//     short job's can be later than its FinishedAt (containerJob).
//   - a start that fails because the command is not in the image: Docker
//     400, Podman 500 "... OCI runtime attempted to invoke a command that
//     was not found" (startError).
//   - a comma in a bind source: Podman writes each of HostConfig.Mounts
//     as a --mount option string, and a comma in the path breaks it
//     ("invalid mount option"); Docker takes it, and both take one in a
//     Binds entry's source, and a ':' in a Mount's (mountable, dirsProblem).
//   - 404 texts: Docker "No such container: x"; Podman "no container with
//     name or ID "x" found: no such container". Both resolve an ID prefix
//     (namedJID guards both).

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// imageLabel keeps the image as the job named it (see Config.Image above).
const imageLabel = "org.chrisproject.pman.image"

// engineKind remembers whether the engine is Podman, asked once.
type engineKind struct {
	mu     sync.Mutex
	known  bool
	podman bool
}

// onPodman returns whether the engine is Podman. An engine that does not
// answer is taken for Docker this time and asked again next time.
func (d *dockerSched) onPodman(ctx context.Context) bool {
	d.engine.mu.Lock()
	defer d.engine.mu.Unlock()
	if d.engine.known {
		return d.engine.podman
	}
	v, err := d.cli.ServerVersion(ctx)
	if err != nil {
		return false
	}
	for _, c := range v.Components {
		if c.Name == "Podman Engine" {
			d.engine.podman = true
		}
	}
	d.engine.known = true
	d.log.Info("container engine", "podman", d.engine.podman, "version", v.Version, "api", v.APIVersion)
	return d.engine.podman
}

// podmanChecks refuses what the engine cannot mount (mountable,
// dirsProblem), and what Podman would do wrong with the job: run it without
// its GPUs.
func (d *dockerSched) podmanChecks(ctx context.Context, j *jobSpec, base string) error {
	podman := d.onPodman(ctx)
	if err := mountable(base, podman); err != nil {
		return err
	}
	if err := dirsProblem(j, podman); err != nil {
		return err
	}
	if podman && j.GPULimit > 0 {
		return fieldError("gpu_limit", fmt.Sprintf("%d GPUs asked of a Podman engine: its Docker-compatible API ignores GPU requests, and the job would run without them", j.GPULimit))
	}
	return nil
}

// dirsProblem returns the field error of a job directory the engine cannot
// mount, by how containerConfig passes it: the output in a Binds entry
// "source:target:rw", so no ':' on any engine; the input as a Mount, which
// Podman writes as a --mount option string, so no ',' on Podman. A ':' in
// the input directory (an upload folder "scan 10:30") and a ',' in the
// output directory are mounted as they are.
func dirsProblem(j *jobSpec, podman bool) error {
	if strings.Contains(j.OutputDir, ":") {
		return fieldError("output_dir", fmt.Sprintf("%q: with CONTAINER_ENV=docker or podman the output directory must not contain ':' (it goes into a bind \"source:target:rw\")", j.OutputDir))
	}
	if podman && strings.Contains(j.InputDir, ",") {
		return fieldError("input_dir", fmt.Sprintf("%q: with a Podman engine the input directory must not contain ',' (Podman reads its mount as a comma-separated option string)", j.InputDir))
	}
	return nil
}

// mountable returns an error when STOREBASE (base: on the engine's host)
// cannot be bound into a container: the output's Binds entry is
// "source:target:rw", so no ':' on any engine, and on Podman no ','.
// dirsProblem does the same for the job's own directories.
func mountable(base string, podman bool) error {
	bad := ":"
	if podman {
		bad = ":,"
	}
	if strings.ContainsAny(base, bad) {
		return errorf(eUnavailable, "STOREBASE %q cannot be mounted into a container: it has one of %q", base, bad)
	}
	return nil
}

// startError is engineError for a container that did not start. The job's
// command missing from its image is the request's fault on both engines:
// Docker says so with a 400, Podman with a 500 and ErrOCIRuntimeNotFound's
// text. Other start failures (Podman's "OCI permission denied" also means
// an engine that cannot set the container's limits) stay the engine's.
func startError(err error, what string) error {
	if err != nil && strings.Contains(err.Error(), "OCI runtime attempted to invoke a command that was not found") {
		return refused(http.StatusBadRequest, "%s: %v", what, err)
	}
	return engineError(err, what)
}

// nameInUse returns whether err is the engine's answer to a create whose
// name is taken: Docker's 409, or Podman's 500 saying so.
func nameInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "is already in use")
}
