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

func TestLoadConfig(t *testing.T) {
	// miniChRIS-docker's environment: no STORAGE_TYPE, no STOREBASE.
	c, err := loadConfig(env("CONTAINER_ENV", "docker", "CONTAINER_USER", "1001:", "ENABLE_HOME_WORKAROUND", "yes",
		"JOB_LABELS", "org.chrisproject.miniChRIS=plugininstance", "SECRET_KEY", "secret", "REMOVE_JOBS", "yes"))
	if err != nil {
		t.Fatalf("loadConfig(miniChRIS-docker): %v", err)
	}
	want := &config{Port: "5010", ContainerEnv: "docker", StorageType: "docker_local_volume",
		PfconSelector: "org.chrisproject.role=pfcon", JobLogsTail: 1000, RemoveJobs: true, JobNamespace: "default",
		HomeWorkaround: true, JobLabels: map[string]string{"org.chrisproject.miniChRIS": "plugininstance"},
		ContainerUser: userSpec{UID: idRange{true, 1001, 1001}}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("loadConfig(miniChRIS-docker) = %+v; want %+v", c, want)
	}

	c, err = loadConfig(env("STORAGE_TYPE", "host", "STOREBASE", "/var/store"))
	if err != nil {
		t.Fatalf("loadConfig(host): %v", err)
	}
	want = &config{Port: "5010", ContainerEnv: "docker", StorageType: "host", StoreBase: "/var/store",
		PfconSelector: "org.chrisproject.role=pfcon", JobLogsTail: 1000, RemoveJobs: true, JobNamespace: "default"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("loadConfig(host) = %+v; want %+v", c, want)
	}

	// With the default storage, a STOREBASE is ignored and the start log says so.
	for _, ce := range []string{"docker", "podman"} {
		c, err = loadConfig(env("CONTAINER_ENV", ce, "STOREBASE", "/var/store"))
		if err != nil || c.StorageType != "docker_local_volume" || c.StoreBase != "" ||
			len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "STOREBASE=/var/store is ignored") {
			t.Errorf("loadConfig(CONTAINER_ENV=%s STOREBASE=/var/store) = %+v, %v; want docker_local_volume, STOREBASE ignored with a note", ce, c, err)
		}
	}

	c, err = loadConfig(env("CONTAINER_ENV", "kubernetes", "STORAGE_TYPE", "kubernetes_pvc", "VOLUME_NAME", "pvc1",
		"REMOVE_JOBS", "no", "IGNORE_LIMITS", "true", "ENABLE_HOME_WORKAROUND", "1", "SHM_SIZE", "64",
		"JOB_LABELS", "a=1, b=2", "NODE_SELECTOR", "gpu=yes", "IMAGE_PULL_SECRETS", "s1, s2,",
		"CONTAINER_USER", "1000-1010:100", "JOB_LOGS_TAIL", "50", "PORT", "8080", "JOB_NAMESPACE", "chris",
		"SECURITYCONTEXT_RUN_AS_USER", "1001", "SECURITYCONTEXT_RUN_AS_GROUP", "0",
		"DOCKER_HOST", "tcp://engine:2376", "DOCKER_TLS_VERIFY", "1", "DOCKER_CERT_PATH", "/certs"))
	if err != nil {
		t.Fatalf("loadConfig(kubernetes): %v", err)
	}
	want = &config{Port: "8080", ContainerEnv: "kubernetes", StorageType: "kubernetes_pvc", VolumeName: "pvc1",
		PfconSelector: "org.chrisproject.role=pfcon", JobLogsTail: 50, RemoveJobs: false, IgnoreLimits: true,
		HomeWorkaround: true, ShmSizeMiB: 64, JobLabels: map[string]string{"a": "1", "b": "2"},
		ContainerUser: userSpec{idRange{true, 1000, 1010}, idRange{true, 100, 100}}, JobNamespace: "chris",
		NodeSelector: map[string]string{"gpu": "yes"}, ImagePullSecrets: []string{"s1", "s2"},
		RunAsUser: "1001", RunAsGroup: "0",
		DockerHost: "tcp://engine:2376", DockerTLSVerify: true, DockerCertPath: "/certs"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("loadConfig(kubernetes) = %+v; want %+v", c, want)
	}

	c, err = loadConfig(env("CONTAINER_ENV", "swarm", "STORAGE_TYPE", "docker_local_volume", "VOLUME_NAME", "chris-store"))
	if err != nil || c.StorageType != "docker_local_volume" || c.VolumeName != "chris-store" || c.StoreBase != "" {
		t.Errorf("swarm with docker_local_volume: %+v, %v; want it with no STOREBASE", c, err)
	}
	c, err = loadConfig(env("CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "CROMWELL_URL", "http://c:8000", "TIMELIMIT_MINUTES", "30"))
	if err != nil || c.TimelimitMinutes != 30 || c.CromwellURL != "http://c:8000" {
		t.Errorf("loadConfig(cromwell) = %+v, %v", c, err)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"CONTAINER_ENV", "openshift", "STOREBASE", "/s"}, "CONTAINER_ENV"},
		{[]string{"STORAGE_TYPE", "host"}, "STOREBASE: required"},
		{[]string{"CONTAINER_ENV", "swarm"}, "STOREBASE: required"},
		{[]string{"STORAGE_TYPE", "host", "STOREBASE", "relative/path"}, "STOREBASE"},
		{[]string{"STOREBASE", "/s", "STORAGE_TYPE", "kubernetes_pvc"}, "STORAGE_TYPE"},
		{[]string{"STOREBASE", "/s", "STORAGE_TYPE", "s3"}, "STORAGE_TYPE"},
		{[]string{"CONTAINER_ENV", "kubernetes", "STORAGE_TYPE", "kubernetes_pvc"}, "VOLUME_NAME"},
		{[]string{"CONTAINER_ENV", "kubernetes", "STORAGE_TYPE", "nfs", "STOREBASE", "/s"}, "NFS_SERVER"},
		{[]string{"STOREBASE", "/s", "JOB_LOGS_TAIL", "many"}, "JOB_LOGS_TAIL"},
		{[]string{"STOREBASE", "/s", "JOB_LOGS_TAIL", "-1"}, "JOB_LOGS_TAIL"},
		{[]string{"STOREBASE", "/s", "REMOVE_JOBS", "maybe"}, "REMOVE_JOBS"},
		{[]string{"STOREBASE", "/s", "IGNORE_LIMITS", "2"}, "IGNORE_LIMITS"},
		{[]string{"STOREBASE", "/s", "SHM_SIZE", "1g"}, "SHM_SIZE"},
		{[]string{"STOREBASE", "/s", "JOB_LABELS", "a"}, "JOB_LABELS"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "1000"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "1:2:3"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "-1:"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "10-1:0"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "CONTAINER_USER", "a:b"}, "CONTAINER_USER"},
		{[]string{"STOREBASE", "/s", "PORT", "http"}, "PORT"},
		{[]string{"STOREBASE", "/s", "PFCON_SELECTOR", "nolabel"}, "PFCON_SELECTOR"},
		{[]string{"STOREBASE", "/s", "SECURITYCONTEXT_RUN_AS_USER", "root"}, "SECURITYCONTEXT_RUN_AS_USER"},
		{[]string{"CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "TIMELIMIT_MINUTES", "5"}, "CROMWELL_URL"},
		{[]string{"CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "TIMELIMIT_MINUTES", "5", "CROMWELL_URL", "c:8000"}, "CROMWELL_URL"},
		{[]string{"CONTAINER_ENV", "cromwell", "STOREBASE", "/s", "CROMWELL_URL", "http://c"}, "TIMELIMIT_MINUTES"},
	}
	for _, tt := range tests {
		_, err := loadConfig(env(tt.env...))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("loadConfig(%q) error = %v; want one naming %s", tt.env, err, tt.want)
		}
	}
	// Several bad values are all reported.
	_, err := loadConfig(env("STOREBASE", "/s", "REMOVE_JOBS", "x", "SHM_SIZE", "y"))
	if err == nil || !strings.Contains(err.Error(), "REMOVE_JOBS") || !strings.Contains(err.Error(), "SHM_SIZE") {
		t.Errorf("loadConfig with two bad values: %v; want both named", err)
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
