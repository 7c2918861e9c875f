package main

import (
	"reflect"
	"strings"
	"testing"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// defaultConfig returns the configuration of an empty environment, with
// STORAGE_TYPE and STOREBASE left for edit to set, changed by edit.
func defaultConfig(edit func(c *config)) *config {
	c := &config{Port: "5010", ContainerEnv: "docker", PfconSelector: "org.chrisproject.role=pfcon",
		JobLogsTail: 1000, RemoveJobs: true, JobNamespace: "default", PidsLimit: defaultPidsLimit}
	edit(c)
	return c
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want *config
	}{
		// miniChRIS-docker's environment: no STORAGE_TYPE, no STOREBASE.
		{"miniChRIS-docker", []string{"CONTAINER_ENV", "docker", "CONTAINER_USER", "1001:", "ENABLE_HOME_WORKAROUND", "yes",
			"JOB_LABELS", "org.chrisproject.miniChRIS=plugininstance", "SECRET_KEY", "secret", "REMOVE_JOBS", "yes"},
			defaultConfig(func(c *config) {
				c.StorageType, c.HomeWorkaround = "docker_local_volume", true
				c.JobLabels = map[string]string{"org.chrisproject.miniChRIS": "plugininstance"}
				c.ContainerUser = userSpec{UID: idRange{true, 1001, 1001}}
			})},
		{"host", []string{"STORAGE_TYPE", "host", "STOREBASE", "/var/store"},
			defaultConfig(func(c *config) { c.StorageType, c.StoreBase = "host", "/var/store" })},
		// With the default storage, a STOREBASE is ignored and the start log says so.
		{"docker with STOREBASE", []string{"CONTAINER_ENV", "docker", "STOREBASE", "/var/store"},
			defaultConfig(func(c *config) {
				c.StorageType = "docker_local_volume"
				c.Notes = []string{"STOREBASE=/var/store is ignored with STORAGE_TYPE=docker_local_volume: the store is the Docker volume's directory, as in pman 6"}
			})},
		{"podman with STOREBASE", []string{"CONTAINER_ENV", "podman", "STOREBASE", "/var/store"},
			defaultConfig(func(c *config) {
				c.ContainerEnv, c.StorageType = "podman", "docker_local_volume"
				c.Notes = []string{"STOREBASE=/var/store is ignored with STORAGE_TYPE=docker_local_volume: the store is the Docker volume's directory, as in pman 6"}
			})},
		{"kubernetes, every variable", []string{"CONTAINER_ENV", "kubernetes", "STORAGE_TYPE", "kubernetes_pvc", "VOLUME_NAME", "pvc1",
			"REMOVE_JOBS", "no", "IGNORE_LIMITS", "true", "ENABLE_HOME_WORKAROUND", "1", "SHM_SIZE", "64",
			"JOB_LABELS", "a=1, b=2", "NODE_SELECTOR", "gpu=yes", "IMAGE_PULL_SECRETS", "s1, s2,",
			"CONTAINER_USER", "1000-1010:100", "JOB_LOGS_TAIL", "50", "PORT", "8080", "JOB_NAMESPACE", "chris",
			"SECURITYCONTEXT_RUN_AS_USER", "1001", "SECURITYCONTEXT_RUN_AS_GROUP", "0", "KUBECONFIG", "/etc/kube.conf",
			"DOCKER_HOST", "tcp://engine:2376", "DOCKER_TLS_VERIFY", "1", "DOCKER_CERT_PATH", "/certs"},
			&config{Port: "8080", ContainerEnv: "kubernetes", StorageType: "kubernetes_pvc", VolumeName: "pvc1",
				PfconSelector: "org.chrisproject.role=pfcon", JobLogsTail: 50, RemoveJobs: false, IgnoreLimits: true,
				HomeWorkaround: true, ShmSizeMiB: 64, JobLabels: map[string]string{"a": "1", "b": "2"},
				ContainerUser: userSpec{idRange{true, 1000, 1010}, idRange{true, 100, 100}}, JobNamespace: "chris",
				Kubeconfig: "/etc/kube.conf", NodeSelector: map[string]string{"gpu": "yes"}, ImagePullSecrets: []string{"s1", "s2"},
				RunAsUser: new(int64(1001)), RunAsGroup: new(int64(0)),
				DockerHost: "tcp://engine:2376", DockerTLSVerify: true, DockerCertPath: "/certs", PidsLimit: defaultPidsLimit}},
		{"empty list and ids", []string{"CONTAINER_ENV", "kubernetes", "STOREBASE", "/s", "IMAGE_PULL_SECRETS", " , ",
			"SECURITYCONTEXT_RUN_AS_USER", " "},
			defaultConfig(func(c *config) { c.ContainerEnv, c.StorageType, c.StoreBase = "kubernetes", "host", "/s" })},
		{"swarm with docker_local_volume", []string{"CONTAINER_ENV", "swarm", "STORAGE_TYPE", "docker_local_volume", "VOLUME_NAME", "chris-store"},
			defaultConfig(func(c *config) {
				c.ContainerEnv, c.StorageType, c.VolumeName = "swarm", "docker_local_volume", "chris-store"
			})},
		{"cromwell", []string{"CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "CROMWELL_URL", "http://c:8000", "TIMELIMIT_MINUTES", "30",
			"SLURM_PARTITION", "short"},
			defaultConfig(func(c *config) {
				c.ContainerEnv, c.StorageType, c.StoreBase = "cromwell", "host", "/s"
				c.CromwellURL, c.TimelimitMinutes, c.SlurmPartition = "http://c:8000", 30, "short"
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.env...))
			if err != nil {
				t.Fatalf("loadConfig(%q): %v", tt.env, err)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Errorf("loadConfig(%q) =\n%+v; want\n%+v", tt.env, c, tt.want)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"CONTAINER_ENV", "openshift", "STOREBASE", "/s"}, `CONTAINER_ENV: "openshift" is not one of swarm, docker, podman, kubernetes, cromwell, slurm`},
		{[]string{"STORAGE_TYPE", "host"}, "STOREBASE: required"},
		{[]string{"CONTAINER_ENV", "swarm"}, "STOREBASE: required"},
		{[]string{"STORAGE_TYPE", "host", "STOREBASE", "relative/path"}, `STOREBASE: "relative/path" is not an absolute path`},
		{[]string{"STOREBASE", "/s", "STORAGE_TYPE", "kubernetes_pvc"}, "STORAGE_TYPE"},
		{[]string{"STOREBASE", "/s", "STORAGE_TYPE", "s3"}, `STORAGE_TYPE: "s3" does not work with CONTAINER_ENV=docker (accepts host, nfs, docker_local_volume)`},
		{[]string{"CONTAINER_ENV", "kubernetes", "STORAGE_TYPE", "kubernetes_pvc"}, "VOLUME_NAME"},
		{[]string{"CONTAINER_ENV", "kubernetes", "STORAGE_TYPE", "nfs", "STOREBASE", "/s"}, "NFS_SERVER"},
		{[]string{"STOREBASE", "/s", "JOB_LOGS_TAIL", "many"}, `JOB_LOGS_TAIL: "many" is not a whole number >= 0`},
		{[]string{"STOREBASE", "/s", "JOB_LOGS_TAIL", "-1"}, "JOB_LOGS_TAIL"},
		{[]string{"STOREBASE", "/s", "REMOVE_JOBS", "maybe"}, `REMOVE_JOBS: "maybe" is not a boolean (accepts yes/no, true/false, 1/0, on/off)`},
		{[]string{"STOREBASE", "/s", "IGNORE_LIMITS", "2"}, "IGNORE_LIMITS"},
		{[]string{"STOREBASE", "/s", "SHM_SIZE", "1g"}, "SHM_SIZE"},
		{[]string{"STOREBASE", "/s", "JOB_LABELS", "a"}, `JOB_LABELS: "a" is not key=value (accepts k1=v1,k2=v2)`},
		{[]string{"STOREBASE", "/s", "NODE_SELECTOR", "=x"}, "NODE_SELECTOR"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "1000"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "1:2:3"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "-1:"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "10-1:0"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "a:b"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "PORT", "http"}, `PORT: "http" is not a TCP port number (0-65535)`},
		{[]string{"STOREBASE", "/s", "PFCON_SELECTOR", "nolabel"}, "PFCON_SELECTOR"},
		{[]string{"STOREBASE", "/s", "SECURITYCONTEXT_RUN_AS_USER", "root"}, `SECURITYCONTEXT_RUN_AS_USER: "root" is not a user or group id (a whole number >= 0)`},
		{[]string{"STOREBASE", "/s", "SECURITYCONTEXT_RUN_AS_GROUP", "-1"}, "SECURITYCONTEXT_RUN_AS_GROUP"},
		{[]string{"STOREBASE", "/s", "TIMELIMIT_MINUTES", "0"}, "TIMELIMIT_MINUTES"},
		{[]string{"CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "TIMELIMIT_MINUTES", "5"}, "CROMWELL_URL"},
		{[]string{"CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "TIMELIMIT_MINUTES", "5", "CROMWELL_URL", "c:8000"}, "CROMWELL_URL"},
		{[]string{"CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "CROMWELL_URL", "http://c"}, "TIMELIMIT_MINUTES"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, " "), func(t *testing.T) {
			_, err := loadConfig(env(tt.env...))
			if err == nil || !strings.Contains(err.Error(), "configuration:\n"+tt.want) {
				t.Errorf("loadConfig(%q) error = %v; want one naming %s", tt.env, err, tt.want)
			}
		})
	}
	// Several bad values are all reported, one a line.
	_, err := loadConfig(env("STOREBASE", "/s", "REMOVE_JOBS", "x", "SHM_SIZE", "y"))
	want := "configuration:\n" + `REMOVE_JOBS: "x" is not a boolean (accepts yes/no, true/false, 1/0, on/off)` + "\n" +
		`SHM_SIZE: "y" is not a whole number >= 0`
	if err == nil || err.Error() != want {
		t.Errorf("loadConfig with two bad values: %v; want %q", err, want)
	}
}

func TestParseUserSpec(t *testing.T) {
	set := func(lo, hi int) idRange { return idRange{true, lo, hi} }
	tests := []struct {
		in   string
		want userSpec
	}{
		{"", userSpec{}},
		{":", userSpec{}},
		{"1001:", userSpec{UID: set(1001, 1001)}},
		{":0", userSpec{GID: set(0, 0)}},
		{"1001:0", userSpec{set(1001, 1001), set(0, 0)}},
		{"1000-2000:100", userSpec{set(1000, 2000), set(100, 100)}},
		{"1000-1234:5678-12345", userSpec{set(1000, 1234), set(5678, 12345)}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseUserSpec(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("parseUserSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestUserSpecPick(t *testing.T) {
	u, err := parseUserSpec("1000-1002:50")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for range 300 {
		uid, gid := u.pick()
		if uid == nil || gid == nil || *uid < 1000 || *uid > 1002 || *gid != 50 {
			t.Fatalf("pick() = %v, %v; want uid in [1000,1002], gid 50", uid, gid)
		}
		seen[*uid] = true
	}
	if len(seen) != 3 {
		t.Errorf("300 picks from 1000-1002 gave only %v", seen)
	}
	if uid, gid := (userSpec{UID: idRange{true, 7, 7}}).pick(); uid == nil || *uid != 7 || gid != nil {
		t.Errorf("\"7:\".pick() = %v, %v; want 7, nil", uid, gid)
	}
}
