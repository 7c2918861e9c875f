package main

// What a job may do inside its container, beyond the engine's defaults:
// no new privileges, and a bounded number of processes (JOB_PIDS_LIMIT).

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/versions"
)

// defaultPidsLimit is JOB_PIDS_LIMIT's default: the processes and threads a
// job may have at once. Threads count. PyTorch's and TensorFlow's pools are
// a thread per core; the most a plugin plausibly has is a worker process per
// core, each with OpenBLAS's pool (at most 64 threads in numpy's wheels): 64
// per core, so this is reached on nodes of 256 cores and more (where the
// kernel's pid_max is 1024 per core, and the limit may be raised). It is 8
// times Podman's own default (2048) and 4 times CRI-O's (4096). A fork bomb
// stops at half of the smallest pid_max a kernel has (32768), so one job
// cannot take the node's last PIDs.
const defaultPidsLimit = 16384

// noNewPrivileges is the security option that sets no_new_privs on the
// job's processes: a setuid or file-capability binary in the image (sudo,
// ping, a planted one) no longer raises the privileges of whoever runs it.
const noNewPrivileges = "no-new-privileges"

// swarmNoNewPrivsAPI is the first Engine API whose Swarm services take
// Privileges.NoNewPrivileges; an older engine ignores the field silently.
const swarmNoNewPrivsAPI = "1.46"

// loadPidsLimit returns JOB_PIDS_LIMIT: a whole number >= 1, or 0 for
// "off" (or 0): pman sets no limit and the engine's own default holds. A
// value set for a backend whose jobs pman cannot limit (c.ContainerEnv) is
// noted at start.
func loadPidsLimit(e *envReader, c *config) int {
	v := strings.ToLower(e.str("JOB_PIDS_LIMIT", ""))
	if v != "" && (c.ContainerEnv == "kubernetes" || c.ContainerEnv == "cromwell") {
		c.Notes = append(c.Notes, fmt.Sprintf("JOB_PIDS_LIMIT is not applied with CONTAINER_ENV=%s: %s", c.ContainerEnv,
			map[string]string{"kubernetes": "the kubelet's podPidsLimit bounds a pod's processes", "cromwell": "the Cromwell backend's configuration runs the container"}[c.ContainerEnv]))
	}
	switch v {
	case "":
		return defaultPidsLimit
	case "off", "0":
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		e.bad("JOB_PIDS_LIMIT", "%q is not a whole number >= 1, or off", v)
		return defaultPidsLimit
	}
	return n
}

// hardenContainer sets the container's no-new-privileges and process limit
// (Docker, Podman).
func hardenContainer(cfg *config, h *container.HostConfig) {
	h.SecurityOpt = append(h.SecurityOpt, noNewPrivileges)
	if cfg.PidsLimit > 0 {
		h.PidsLimit = new(int64(cfg.PidsLimit))
	}
}

// hardenService sets the service's process limit and, where the engine's
// API (apiVersion, as negotiated) has it, no-new-privileges. It returns a
// line saying what the engine could not apply, or "".
func hardenService(cfg *config, spec *swarm.ServiceSpec, apiVersion string) string {
	tt := &spec.TaskTemplate
	if cfg.PidsLimit > 0 {
		// Resources.Limits.Pids is in every engine pman supports (API 1.41,
		// Docker 20.10); with IGNORE_LIMITS there is no Limits yet.
		if tt.Resources == nil {
			tt.Resources = &swarm.ResourceRequirements{}
		}
		if tt.Resources.Limits == nil {
			tt.Resources.Limits = &swarm.Limit{}
		}
		tt.Resources.Limits.Pids = int64(cfg.PidsLimit)
	}
	if versions.LessThan(apiVersion, swarmNoNewPrivsAPI) {
		return fmt.Sprintf("the Docker engine's API %s is older than %s: Swarm jobs run without no-new-privileges unless the engine sets it for every container (\"no-new-privileges\": true in daemon.json)", apiVersion, swarmNoNewPrivsAPI)
	}
	if tt.ContainerSpec.Privileges == nil {
		tt.ContainerSpec.Privileges = &swarm.Privileges{}
	}
	tt.ContainerSpec.Privileges.NoNewPrivileges = true
	return ""
}

// sharedAPIVersion returns the API version both the engine (its ping's,
// "" from an engine too old to say, which speaks 1.24) and the client speak.
func sharedAPIVersion(engine, client string) string {
	if engine == "" {
		engine = "1.24"
	}
	if versions.LessThan(client, engine) {
		return client
	}
	return engine
}
