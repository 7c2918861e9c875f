package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// symlinkStore returns a STOREBASE laid out as an attacker's earlier job
// would leave it: u/in and u/out, and in u/out the links a job can make
// (absolute and relative, out of the store, to it, into .pman, and inside
// it), plus outside, a directory out of the store.
func symlinkStore(t *testing.T) (store, outside string) {
	t.Helper()
	root := t.TempDir()
	store, outside = filepath.Join(root, "store"), filepath.Join(root, "outside")
	for _, d := range []string{"u/in", "u/out", "u/real", ".pman/slurm/other-job"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(outside, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"u/out/root":    "/",
		"u/out/up":      "../../..",
		"u/out/pmandir": "../../.pman",
		"u/out/top":     "../..",
		"u/out/sib":     "../in",
		"u/out/dang":    "/nonexistent-pman-test/x",
		"u/out/loop":    "loop",
		"u/out/abs-in":  filepath.Join(store, "u/real"), // absolute, but inside
		"u/esc":         outside,
		"u/link":        "out",
	} {
		if err := os.Symlink(target, filepath.Join(store, name)); err != nil {
			t.Fatal(err)
		}
	}
	return store, outside
}

// TestResolveJobDirs: a job directory that leads out of STOREBASE through a
// symlink, absolute or relative, in either directory and in any component,
// or to STOREBASE itself or into .pman, is a 400 on its field naming the
// link; one that stays inside is answered resolved.
func TestResolveJobDirs(t *testing.T) {
	store, outside := symlinkStore(t)
	tests := []struct {
		name, in, out      string
		wantIn, wantOut    string // resolved, when accepted
		wantField, wantIn2 string // the refused field, and what its problem says
	}{
		{name: "no links", in: "u/in", out: "u/out", wantIn: "u/in", wantOut: "u/out"},
		{name: "output made later", in: "u/in", out: "u/out/new/deeper", wantIn: "u/in", wantOut: "u/out/new/deeper"},
		{name: "absolute link as input_dir", in: "u/out/root", out: "u/out", wantField: "input_dir", wantIn2: "leads out of STOREBASE through the symlink u/out/root -> /"},
		{name: "absolute link above output_dir", in: "u/in", out: "u/out/root/etc", wantField: "output_dir", wantIn2: "u/out/root -> /"},
		{name: "relative link as input_dir", in: "u/out/up", out: "u/out", wantField: "input_dir", wantIn2: "u/out/up -> ../../.."},
		{name: "relative link above a missing output_dir", in: "u/in", out: "u/out/up/x/y", wantField: "output_dir", wantIn2: "leads out of STOREBASE"},
		{name: "link in a middle component", in: "u/esc/data", out: "u/out", wantField: "input_dir", wantIn2: "u/esc -> " + outside},
		{name: "middle component, output", in: "u/in", out: "u/esc/new", wantField: "output_dir", wantIn2: "leads out of STOREBASE"},
		{name: "into .pman", in: "u/in", out: "u/out/pmandir/slurm/other-job", wantField: "output_dir", wantIn2: "leads into pman's own directory .pman"},
		{name: "to STOREBASE itself", in: "u/out/top", out: "u/out", wantField: "input_dir", wantIn2: "leads to STOREBASE itself"},
		{name: "dangling link out", in: "u/in", out: "u/out/dang/new", wantField: "output_dir", wantIn2: "u/out/dang -> /nonexistent-pman-test/x"},
		{name: "link loop", in: "u/out/loop", out: "u/out", wantField: "input_dir", wantIn2: "symlinks"},
		{name: "relative link inside", in: "u/out/sib", out: "u/link/new", wantIn: "u/in", wantOut: "u/out/new"},
		{name: "absolute link inside", in: "u/out/abs-in", out: "u/out", wantIn: "u/real", wantOut: "u/out"},
		{name: "missing input", in: "u/nope", out: "u/out", wantField: "input_dir", wantIn2: "does not exist"},
		{name: "missing input below a link inside", in: "u/link/nope", out: "u/out", wantField: "input_dir", wantIn2: "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &jobSpec{JID: "j", InputDir: tt.in, OutputDir: tt.out}
			got, err := resolveJobDirs(store, j)
			if tt.wantField == "" {
				if err != nil || got.InputDir != tt.wantIn || got.OutputDir != tt.wantOut {
					t.Fatalf("resolveJobDirs(%q, %q) = %+v, %v; want %q, %q", tt.in, tt.out, got, err, tt.wantIn, tt.wantOut)
				}
				if j.InputDir != tt.in || j.OutputDir != tt.out {
					t.Errorf("resolveJobDirs changed the job it was given: %+v", j)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.kind != eInvalid || !strings.Contains(ae.fields[tt.wantField], tt.wantIn2) {
				t.Errorf("resolveJobDirs(%q, %q) = %+v, %v; want a 400 on %s saying ...%s...", tt.in, tt.out, got, err, tt.wantField, tt.wantIn2)
			}
		})
	}
	if _, err := os.Stat("/nonexistent-pman-test"); err == nil {
		t.Errorf("checking made the dangling link's target")
	}
}

// TestResolveJobDirsStoreLink: STOREBASE may itself be a symlink. Links
// are judged against the store it leads to, and a directory is answered
// relative to it, so the mount stays STOREBASE/<dir> as the nodes see it.
func TestResolveJobDirsStoreLink(t *testing.T) {
	store, _ := symlinkStore(t)
	base := filepath.Join(t.TempDir(), "storebase")
	if err := os.Symlink(store, base); err != nil {
		t.Fatal(err)
	}
	got, err := resolveJobDirs(base, &jobSpec{InputDir: "u/out/abs-in", OutputDir: "u/link/new"})
	if err != nil || got.InputDir != "u/real" || got.OutputDir != "u/out/new" {
		t.Errorf("through a linked STOREBASE: %+v, %v; want u/real and u/out/new", got, err)
	}
	_, err = resolveJobDirs(base, &jobSpec{InputDir: "u/out/up", OutputDir: "u/out"})
	if ae, ok := err.(*apiError); !ok || !strings.Contains(ae.fields["input_dir"], "leads out of STOREBASE") {
		t.Errorf("a link out, through a linked STOREBASE: %v; want a 400 on input_dir", err)
	}
}

// TestResolveJobDirsNoStore: where pman does not see the store, there is
// nothing to check, and the job is answered as it is.
func TestResolveJobDirsNoStore(t *testing.T) {
	j := &jobSpec{InputDir: "u/out/root", OutputDir: "u/out"}
	if got, err := resolveJobDirs(filepath.Join(t.TempDir(), "not-here"), j); err != nil || got != j {
		t.Errorf("resolveJobDirs without a store = %+v, %v; want the job unchanged", got, err)
	}
}

// TestMountsResolvedPath: what every backend mounts (or puts in its script or
// WDL) is the resolved directory. The link the request went through is
// swapped for one to / after the check, as its job could do: nothing built
// from the checked job follows it.
func TestMountsResolvedPath(t *testing.T) {
	store, _ := symlinkStore(t)
	if err := os.Symlink("../real", filepath.Join(store, "u/out/via")); err != nil {
		t.Fatal(err)
	}
	j, err := resolveJobDirs(store, &jobSpec{JID: "j", Image: "img", Workers: 1, InputDir: "u/out/via", OutputDir: "u/link/new"})
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's swap, after the check.
	os.Remove(filepath.Join(store, "u/out/via"))
	if err := os.Symlink("/", filepath.Join(store, "u/out/via")); err != nil {
		t.Fatal(err)
	}
	in, out := filepath.Join(store, "u/real"), filepath.Join(store, "u/out/new")
	cfg := &config{StoreBase: store, StorageType: "host", Slurm: slurmConfig{Runtime: "docker"}}

	_, h := containerConfig(cfg, j, store)
	if h.Mounts[0].Source != in || h.Binds[0] != out+":"+outgoingDir+":rw" {
		t.Errorf("Docker mounts %q and binds %q; want %s and %s", h.Mounts[0].Source, h.Binds, in, out)
	}
	ms := serviceSpec(cfg, j, store).TaskTemplate.ContainerSpec.Mounts
	if ms[0].Source != in || ms[1].Source != out {
		t.Errorf("Swarm mounts %q, %q; want %s, %s", ms[0].Source, ms[1].Source, in, out)
	}
	script := slurmScript(cfg, j, slurmRecord{jid: "j", dir: filepath.Join(slurmRecordsDir(store), "j")})
	if !strings.Contains(script, "in="+shQuote(in)+"\n") || !strings.Contains(script, "out="+shQuote(out)+"\n") {
		t.Errorf("the SLURM script does not bind %s and %s:\n%s", in, out, script)
	}
	wdl, err := (&cromwellSched{cfg: cfg}).renderJob(j)
	if err != nil || !strings.Contains(wdl, "'"+in+"'") || !strings.Contains(wdl, "'"+out+"'") {
		t.Errorf("the WDL does not bind %s and %s (%v):\n%s", in, out, err, wdl)
	}
	kj := buildKubeJob(cfg, j, nil, nil)
	vm := kj.Spec.Template.Spec.Containers[0].VolumeMounts
	if vm[0].SubPath != "u/real" || vm[1].SubPath != "u/out/new" {
		t.Errorf("Kubernetes subPaths %q, %q; want u/real, u/out/new", vm[0].SubPath, vm[1].SubPath)
	}
	for _, s := range []string{h.Mounts[0].Source, h.Binds[0], ms[0].Source, ms[1].Source} {
		if strings.Contains(s, "via") || strings.Contains(s, "link") {
			t.Errorf("mounted %q: a path through the link", s)
		}
	}
}
