package main

// Configuration: the environment, read once at start.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// config is the environment, parsed once at start.
type config struct {
	Port           string
	ContainerEnv   string // swarm, docker, podman, kubernetes, cromwell
	StorageType    string // host, nfs, docker_local_volume, kubernetes_pvc
	StoreBase      string
	NFSServer      string
	VolumeName     string
	PfconSelector  string
	JobLogsTail    int
	RemoveJobs     bool
	IgnoreLimits   bool
	HomeWorkaround bool
	ShmSizeMiB     int
	JobLabels      map[string]string
	ContainerUser  userSpec // CONTAINER_USER; an unset side keeps the image's

	// Notes are one-line remarks on the configuration, logged at start.
	Notes []string

	// Kubernetes
	Kubeconfig       string // KUBECONFIG, used when not running in a pod
	JobNamespace     string
	NodeSelector     map[string]string
	ImagePullSecrets []string
	RunAsUser        string // SECURITYCONTEXT_RUN_AS_USER, digits or ""
	RunAsGroup       string

	// The Docker engine (docker, podman, swarm), as the docker CLI reads it.
	DockerHost      string
	DockerTLSVerify bool
	DockerCertPath  string

	// Cromwell
	CromwellURL      string
	TimelimitMinutes int
	SlurmPartition   string

	// SLURM through slurmrestd (CONTAINER_ENV=slurm); see slurm.go.
	Slurm slurmConfig
}

// storageTypes lists which STORAGE_TYPE each backend can mount.
var storageTypes = map[string][]string{
	"swarm":      {"host", "nfs", "docker_local_volume"},
	"docker":     {"host", "nfs", "docker_local_volume"},
	"podman":     {"host", "nfs", "docker_local_volume"},
	"kubernetes": {"host", "nfs", "kubernetes_pvc"},
	"cromwell":   {"host", "nfs"},
	"slurm":      {"host", "nfs"},
}

// loadConfig reads the environment. Every bad value is an error that names
// the variable and what it accepts: a deployment must not start half-right.
func loadConfig(getenv func(string) string) (*config, error) {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, a...)...))
	}
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	integer := func(name string, def, min int) int {
		v := str(name, "")
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			bad(name, "%q is not a whole number >= %d", v, min)
			return def
		}
		return n
	}
	boolean := func(name string, def bool) bool {
		v := strings.ToLower(str(name, ""))
		switch v {
		case "":
			return def
		case "1", "true", "yes", "y", "on":
			return true
		case "0", "false", "no", "n", "off":
			return false
		}
		bad(name, "%q is not a boolean (accepts yes/no, true/false, 1/0, on/off)", v)
		return def
	}
	pairs := func(name string) map[string]string {
		v := str(name, "")
		if v == "" {
			return nil
		}
		m, err := parsePairs(v)
		if err != nil {
			bad(name, "%v (accepts k1=v1,k2=v2)", err)
		}
		return m
	}

	c := &config{
		Port:             str("PORT", "5010"),
		ContainerEnv:     str("CONTAINER_ENV", "docker"),
		StoreBase:        str("STOREBASE", ""),
		NFSServer:        str("NFS_SERVER", ""),
		VolumeName:       str("VOLUME_NAME", ""),
		PfconSelector:    str("PFCON_SELECTOR", "org.chrisproject.role=pfcon"),
		JobLogsTail:      integer("JOB_LOGS_TAIL", 1000, 0),
		RemoveJobs:       boolean("REMOVE_JOBS", true),
		IgnoreLimits:     boolean("IGNORE_LIMITS", false),
		HomeWorkaround:   boolean("ENABLE_HOME_WORKAROUND", false),
		ShmSizeMiB:       integer("SHM_SIZE", 0, 0),
		JobLabels:        pairs("JOB_LABELS"),
		Kubeconfig:       str("KUBECONFIG", ""),
		JobNamespace:     str("JOB_NAMESPACE", "default"),
		NodeSelector:     pairs("NODE_SELECTOR"),
		RunAsUser:        str("SECURITYCONTEXT_RUN_AS_USER", ""),
		RunAsGroup:       str("SECURITYCONTEXT_RUN_AS_GROUP", ""),
		CromwellURL:      str("CROMWELL_URL", ""),
		TimelimitMinutes: integer("TIMELIMIT_MINUTES", 0, 1),
		SlurmPartition:   str("SLURM_PARTITION", ""),
		DockerHost:       str("DOCKER_HOST", ""),
		DockerTLSVerify:  getenv("DOCKER_TLS_VERIFY") != "", // any value, as the docker CLI
		DockerCertPath:   str("DOCKER_CERT_PATH", ""),
	}
	if n, err := strconv.Atoi(c.Port); err != nil || n < 0 || n > 65535 {
		bad("PORT", "%q is not a TCP port number (0-65535)", c.Port)
	}
	allowed, ok := storageTypes[c.ContainerEnv]
	if !ok {
		bad("CONTAINER_ENV", "%q is not one of swarm, docker, podman, kubernetes, cromwell, slurm", c.ContainerEnv)
	}
	// pman 6 defaulted to the Docker volume on a plain engine: miniChRIS
	// sets neither STORAGE_TYPE nor STOREBASE.
	defStorage := "host"
	if c.ContainerEnv == "docker" || c.ContainerEnv == "podman" {
		defStorage = "docker_local_volume"
	}
	c.StorageType = str("STORAGE_TYPE", defStorage)
	if c.StorageType == "docker_local_volume" && c.StoreBase != "" {
		c.Notes = append(c.Notes, fmt.Sprintf("STOREBASE=%s is ignored with STORAGE_TYPE=docker_local_volume: the store is the Docker volume's directory, as in pman 6", c.StoreBase))
		c.StoreBase = ""
	}
	if ok && !slices.Contains(allowed, c.StorageType) {
		bad("STORAGE_TYPE", "%q does not work with CONTAINER_ENV=%s (accepts %s)", c.StorageType, c.ContainerEnv, strings.Join(allowed, ", "))
	}
	switch c.StorageType {
	case "host", "nfs":
		if c.StoreBase == "" {
			bad("STOREBASE", "required with STORAGE_TYPE=%s: the path of the job store on every node", c.StorageType)
		} else if !path.IsAbs(c.StoreBase) {
			bad("STOREBASE", "%q is not an absolute path", c.StoreBase)
		}
		if c.StorageType == "nfs" && c.ContainerEnv == "kubernetes" && c.NFSServer == "" {
			bad("NFS_SERVER", "required with STORAGE_TYPE=nfs on Kubernetes")
		}
	case "kubernetes_pvc":
		if c.VolumeName == "" {
			bad("VOLUME_NAME", "required with STORAGE_TYPE=kubernetes_pvc: the name of the PVC")
		}
	}
	if _, _, err := splitPair(c.PfconSelector); err != nil {
		bad("PFCON_SELECTOR", "%v (accepts key=value)", err)
	}
	if u, err := parseUserSpec(str("CONTAINER_USER", "")); err != nil {
		bad("CONTAINER_USER", "%v (accepts UID:GID, each side empty, a number or a range lo-hi)", err)
	} else {
		c.ContainerUser = u
	}
	for _, name := range []string{"SECURITYCONTEXT_RUN_AS_USER", "SECURITYCONTEXT_RUN_AS_GROUP"} {
		if v := getenv(name); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				bad(name, "%q is not a user or group id (a whole number >= 0)", v)
			}
		}
	}
	if v := str("IMAGE_PULL_SECRETS", ""); v != "" {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.ImagePullSecrets = append(c.ImagePullSecrets, s)
			}
		}
	}
	if c.ContainerEnv == "cromwell" {
		if c.CromwellURL == "" {
			bad("CROMWELL_URL", "required with CONTAINER_ENV=cromwell: the Cromwell server's URL")
		} else if u, err := url.Parse(c.CromwellURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("CROMWELL_URL", "%q is not an http(s) URL", redactURL(c.CromwellURL))
		}
		if msg := checkPartition(c.SlurmPartition); c.SlurmPartition != "" && msg != "" {
			bad("SLURM_PARTITION", "%s", msg)
		}
		if c.TimelimitMinutes == 0 {
			bad("TIMELIMIT_MINUTES", "required with CONTAINER_ENV=cromwell: the SLURM time limit in minutes")
		}
	}
	if c.ContainerEnv == "slurm" {
		c.Slurm = loadSlurmConfig(c, str, bad)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	return c, nil
}

// parsePairs reads "k1=v1,k2=v2".
func parsePairs(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		k, v, err := splitPair(item)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

func splitPair(item string) (string, string, error) {
	k, v, ok := strings.Cut(item, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" {
		return "", "", fmt.Errorf("%q is not key=value", item)
	}
	return k, strings.TrimSpace(v), nil
}

// userSpec is CONTAINER_USER, "UID:GID". Either side may be unset (empty),
// a number, or a range lo-hi from which each job draws its own id.
type userSpec struct {
	UID, GID idRange
}

// idRange is one side of CONTAINER_USER; the zero value is "not set".
type idRange struct {
	Set    bool
	Lo, Hi int
}

// parseUserSpec reads CONTAINER_USER as pman 6 did: "1001:", ":0", ":" and
// "" are all valid; anything else needs exactly one ':'.
func parseUserSpec(s string) (userSpec, error) {
	if s == "" {
		return userSpec{}, nil
	}
	us, gs, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(gs, ":") {
		return userSpec{}, fmt.Errorf("%q is not UID:GID (one ':')", s)
	}
	var u userSpec
	var err error
	if u.UID, err = parseRange(us); err != nil {
		return userSpec{}, fmt.Errorf("UID %v", err)
	}
	if u.GID, err = parseRange(gs); err != nil {
		return userSpec{}, fmt.Errorf("GID %v", err)
	}
	return u, nil
}

// parseRange returns one side of CONTAINER_USER: unset when empty.
func parseRange(s string) (idRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return idRange{}, nil
	}
	los, his, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(los)
	if err != nil || lo < 0 {
		return idRange{}, fmt.Errorf("%q is not empty, a number >= 0 or a range lo-hi", s)
	}
	hi := lo
	if isRange {
		hi, err = strconv.Atoi(his)
		if err != nil || hi < lo {
			return idRange{}, fmt.Errorf("%q is not a range lo-hi with lo <= hi", s)
		}
	}
	return idRange{Set: true, Lo: lo, Hi: hi}, nil
}

// pick returns an id drawn from the range, or nil when the side is unset.
func (r idRange) pick() *int {
	if !r.Set {
		return nil
	}
	return new(r.Lo + rand.IntN(r.Hi-r.Lo+1))
}

// pick returns the ids for one job; nil sides keep the image's.
func (u userSpec) pick() (uid, gid *int) {
	return u.UID.pick(), u.GID.pick()
}
