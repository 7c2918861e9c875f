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
	JobLogsMaxSize int // JOB_LOGS_MAX_BYTES, read through logsMaxBytes (0: the default)
	RemoveJobs     bool
	IgnoreLimits   bool
	HomeWorkaround bool
	ShmSizeMiB     int
	MaxConns       int // MAX_CONNECTIONS; 0: defaultMaxConns
	JobLabels      map[string]string
	ContainerUser  userSpec       // CONTAINER_USER; an unset side keeps the image's
	PidsLimit      int            // JOB_PIDS_LIMIT; 0: none set by pman (hardening.go)
	ImageAllowlist imageAllowlist // JOB_IMAGE_ALLOWLIST; nil allows every image (allowlist.go)

	// Capacity is JOB_CAPACITY; nil: no admission, as pman 6 (queue.go).
	Capacity *capacitySetting

	// Notes are one-line remarks on the configuration, logged at start.
	Notes []string

	// Kubernetes
	Kubeconfig       string // KUBECONFIG, used when not running in a pod
	JobNamespace     string
	NodeSelector     map[string]string
	ImagePullSecrets []string
	RunAsUser        *int64 // SECURITYCONTEXT_RUN_AS_USER; nil when unset
	RunAsGroup       *int64 // SECURITYCONTEXT_RUN_AS_GROUP; nil when unset

	// The Docker engine (docker, podman, swarm), as the docker CLI reads it.
	DockerHost      string
	DockerTLSVerify bool
	DockerCertPath  string

	// Cromwell
	CromwellURL      secretURL // printed redacted; reveal for requests only
	TimelimitMinutes int
	SlurmPartition   string

	// SLURM through slurmrestd (CONTAINER_ENV=slurm); see slurm.go.
	Slurm slurmConfig
}

// containerEnvs are the values of CONTAINER_ENV.
var containerEnvs = []string{"swarm", "docker", "podman", "kubernetes", "cromwell", "slurm"}

// storageTypes lists which STORAGE_TYPE each backend can mount.
var storageTypes = map[string][]string{
	"swarm":      {"host", "nfs", "docker_local_volume"},
	"docker":     {"host", "nfs", "docker_local_volume"},
	"podman":     {"host", "nfs", "docker_local_volume"},
	"kubernetes": {"host", "nfs", "kubernetes_pvc"},
	"cromwell":   {"host", "nfs"},
	"slurm":      {"host", "nfs"},
}

// loadConfig returns the configuration the environment holds, or an error
// that lists every bad value, each naming the variable and what it accepts:
// a deployment must not start half-right.
func loadConfig(getenv func(string) string) (*config, error) {
	e := &envReader{getenv: getenv}
	c := &config{}
	loadCommon(e, c)
	loadStorage(e, c)
	loadDocker(e, c)
	loadKube(e, c)
	loadCromwell(e, c)
	loadCapacity(e, c)
	if c.ContainerEnv == "slurm" {
		c.Slurm = loadSlurmConfig(e, c)
	}
	if err := errors.Join(e.errs...); err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	return c, nil
}

// loadCommon reads the variables every backend uses.
func loadCommon(e *envReader, c *config) {
	c.ContainerEnv = e.oneOf("CONTAINER_ENV", "docker", containerEnvs)
	c.Port = e.str("PORT", "5010")
	if n, err := strconv.Atoi(c.Port); err != nil || n < 0 || n > 65535 {
		e.bad("PORT", "%q is not a TCP port number (0-65535)", c.Port)
	}
	c.JobLogsTail = e.int("JOB_LOGS_TAIL", 1000, 0)
	c.JobLogsMaxSize = e.int("JOB_LOGS_MAX_BYTES", 0, 1) // 0: logsMaxBytes gives the default
	c.RemoveJobs = e.bool("REMOVE_JOBS", true)
	c.IgnoreLimits = e.bool("IGNORE_LIMITS", false)
	c.HomeWorkaround = e.bool("ENABLE_HOME_WORKAROUND", false)
	c.ShmSizeMiB = e.int("SHM_SIZE", 0, 0)
	c.MaxConns = e.int("MAX_CONNECTIONS", 0, 1) // 0: defaultLimits gives the default
	c.JobLabels = e.pairs("JOB_LABELS")
	u, err := parseUserSpec(e.str("CONTAINER_USER", ""))
	if err != nil {
		e.bad("CONTAINER_USER", "%v (accepts UID:GID, each side empty, a number or a range lo-hi)", err)
	}
	c.ContainerUser = u
	c.PidsLimit = loadPidsLimit(e, c)
	allow, errs := parseImageAllowlist(e.list("JOB_IMAGE_ALLOWLIST"))
	for _, err := range errs {
		e.bad("JOB_IMAGE_ALLOWLIST", "%v", err)
	}
	c.ImageAllowlist = allow
}

// loadStorage reads where the job store is; c.ContainerEnv is read, as the
// storage a backend can mount depends on it.
func loadStorage(e *envReader, c *config) {
	c.StoreBase = e.str("STOREBASE", "")
	c.NFSServer = e.str("NFS_SERVER", "")
	c.VolumeName = e.str("VOLUME_NAME", "")
	// pman 6 defaulted to the Docker volume on a plain engine: miniChRIS
	// sets neither STORAGE_TYPE nor STOREBASE.
	defStorage := "host"
	if c.ContainerEnv == "docker" || c.ContainerEnv == "podman" {
		defStorage = "docker_local_volume"
	}
	c.StorageType = e.str("STORAGE_TYPE", defStorage)
	if c.StorageType == "docker_local_volume" && c.StoreBase != "" {
		c.Notes = append(c.Notes, fmt.Sprintf("STOREBASE=%s is ignored with STORAGE_TYPE=docker_local_volume: the store is the Docker volume's directory, as in pman 6", c.StoreBase))
		c.StoreBase = ""
	}
	if allowed, ok := storageTypes[c.ContainerEnv]; ok && !slices.Contains(allowed, c.StorageType) {
		e.bad("STORAGE_TYPE", "%q does not work with CONTAINER_ENV=%s (accepts %s)", c.StorageType, c.ContainerEnv, strings.Join(allowed, ", "))
	}
	switch c.StorageType {
	case "host", "nfs":
		if c.StoreBase == "" {
			e.bad("STOREBASE", "required with STORAGE_TYPE=%s: the path of the job store on every node", c.StorageType)
		} else if !path.IsAbs(c.StoreBase) {
			e.bad("STOREBASE", "%q is not an absolute path", c.StoreBase)
		}
		if c.StorageType == "nfs" && c.ContainerEnv == "kubernetes" && c.NFSServer == "" {
			e.bad("NFS_SERVER", "required with STORAGE_TYPE=nfs on Kubernetes")
		}
	case "kubernetes_pvc":
		if c.VolumeName == "" {
			e.bad("VOLUME_NAME", "required with STORAGE_TYPE=kubernetes_pvc: the name of the PVC")
		}
	}
}

// loadDocker reads the Docker engine's variables (docker, podman, swarm).
func loadDocker(e *envReader, c *config) {
	c.DockerHost = e.str("DOCKER_HOST", "")
	c.DockerTLSVerify = e.getenv("DOCKER_TLS_VERIFY") != "" // any value, as the docker CLI
	c.DockerCertPath = e.str("DOCKER_CERT_PATH", "")
	c.PfconSelector = e.str("PFCON_SELECTOR", "org.chrisproject.role=pfcon")
	if _, _, err := splitPair(c.PfconSelector); err != nil {
		e.bad("PFCON_SELECTOR", "%v (accepts key=value)", err)
	}
}

// loadKube reads the Kubernetes variables.
func loadKube(e *envReader, c *config) {
	c.Kubeconfig = e.str("KUBECONFIG", "")
	c.JobNamespace = e.str("JOB_NAMESPACE", "default")
	c.NodeSelector = e.pairs("NODE_SELECTOR")
	c.ImagePullSecrets = e.list("IMAGE_PULL_SECRETS")
	c.RunAsUser = e.id("SECURITYCONTEXT_RUN_AS_USER")
	c.RunAsGroup = e.id("SECURITYCONTEXT_RUN_AS_GROUP")
}

// loadCromwell reads the Cromwell variables, required with CONTAINER_ENV=cromwell.
func loadCromwell(e *envReader, c *config) {
	c.CromwellURL = secretURL(e.str("CROMWELL_URL", ""))
	c.TimelimitMinutes = e.int("TIMELIMIT_MINUTES", 0, 1)
	c.SlurmPartition = e.str("SLURM_PARTITION", "")
	if c.ContainerEnv != "cromwell" {
		return
	}
	if c.CromwellURL == "" {
		e.bad("CROMWELL_URL", "required with CONTAINER_ENV=cromwell: the Cromwell server's URL")
	} else if u, err := url.Parse(c.CromwellURL.reveal()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.bad("CROMWELL_URL", "%q is not an http(s) URL", c.CromwellURL)
	} else if msg := urlQueryProblem(u); msg != "" {
		e.bad("CROMWELL_URL", "%q %s", c.CromwellURL, msg)
	}
	if msg := checkPartition(c.SlurmPartition); c.SlurmPartition != "" && msg != "" {
		e.bad("SLURM_PARTITION", "%s", msg)
	}
	if c.TimelimitMinutes == 0 {
		e.bad("TIMELIMIT_MINUTES", "required with CONTAINER_ENV=cromwell: the SLURM time limit in minutes")
	}
}

// envReader reads variables through getenv and keeps every problem found,
// each naming the variable and what it accepts. Its methods return a value
// even for a bad variable, so that the rest is still read and every problem
// is reported at once.
type envReader struct {
	getenv func(string) string
	errs   []error
}

// bad records a problem with the variable name.
func (e *envReader) bad(name, format string, a ...any) {
	e.errs = append(e.errs, fmt.Errorf("%s: "+format, append([]any{name}, a...)...))
}

// str returns the variable without surrounding spaces, or def when that is empty.
func (e *envReader) str(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// int returns the variable as a whole number >= min, or def when it is
// empty or bad.
func (e *envReader) int(name string, def, min int) int {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		e.bad(name, "%q is not a whole number >= %d", v, min)
		return def
	}
	return n
}

// bool returns the variable as a boolean, or def when it is empty or bad.
func (e *envReader) bool(name string, def bool) bool {
	v := strings.ToLower(e.str(name, ""))
	switch v {
	case "":
		return def
	case "1", "true", "yes", "y", "on":
		return true
	case "0", "false", "no", "n", "off":
		return false
	}
	e.bad(name, "%q is not a boolean (accepts yes/no, true/false, 1/0, on/off)", v)
	return def
}

// pairs returns the variable read as "k1=v1,k2=v2", or nil when it is empty.
func (e *envReader) pairs(name string) map[string]string {
	v := e.str(name, "")
	if v == "" {
		return nil
	}
	m, err := parsePairs(v)
	if err != nil {
		e.bad(name, "%v (accepts k1=v1,k2=v2)", err)
	}
	return m
}

// list returns the variable's comma-separated items, without spaces or
// empty items; nil when there are none.
func (e *envReader) list(name string) []string {
	var l []string
	for _, s := range strings.Split(e.str(name, ""), ",") {
		if s = strings.TrimSpace(s); s != "" {
			l = append(l, s)
		}
	}
	return l
}

// oneOf returns the variable, or def when it is empty; a value that is not
// one of names is a problem, and is returned as it is.
func (e *envReader) oneOf(name, def string, names []string) string {
	v := e.str(name, def)
	if !slices.Contains(names, v) {
		e.bad(name, "%q is not one of %s", v, strings.Join(names, ", "))
	}
	return v
}

// id returns the variable as a user or group id, or nil when it is empty
// or bad.
func (e *envReader) id(name string) *int64 {
	v := e.str(name, "")
	if v == "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		e.bad(name, "%q is not a user or group id (a whole number >= 0)", v)
		return nil
	}
	return &n
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
