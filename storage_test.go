package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreDirs(t *testing.T) {
	tests := []struct {
		jid, in, out       string
		wantIn, wantOut    string
		wantField, wantErr string
	}{
		{"j1", "", "", "key-j1/incoming", "key-j1/outgoing", "", ""},
		{"j1", "home/u/in", "home/u/out", "home/u/in", "home/u/out", "", ""},
		{"j1", "/home/u/in/", "//home/u/out//", "home/u/in", "home/u/out", "", ""},
		{"j1", "a//b", "c", "a/b", "c", "", ""},
		{"j1", "..x/y", "c..", "..x/y", "c..", "", ""}, // dots inside a name are a name
		{"j1", "../etc", "out", "", "", "input_dir", "must stay inside STOREBASE"},
		{"j1", "in", "a/../../b", "", "", "output_dir", "must stay inside STOREBASE"},
		{"j1", "in", "a/..", "", "", "output_dir", "must stay inside STOREBASE"},
		{"j1", "./in", "out", "", "", "input_dir", "must stay inside STOREBASE"},
		{"j1", "/", "out", "", "", "input_dir", "is STOREBASE itself"},
		{"j1", "in", "", "", "", "output_dir", "Missing required parameter"},
		{"j1", "", "out", "", "", "input_dir", "Missing required parameter"},
		{"j1", "in\x00x", "out", "", "", "input_dir", "must not contain"},
		{"j1", `a\..\b`, "out", "", "", "input_dir", "must not contain"},
		// ':' and ',' are for the backends whose mount syntax cannot carry
		// them to refuse (dirsProblem, renderSlurmScript, checkBindDir).
		{"j1", "home/chris/uploads/scan 10:30", "a,b", "home/chris/uploads/scan 10:30", "a,b", "", ""},
		{"j1", "in", "a:/etc", "in", "a:/etc", "", ""},
		{"j1", "in", ".pman/slurm/other-job", "", "", "output_dir", "pman's own directory"},
		{"j1", "/.pman", "out", "", "", "input_dir", "pman's own directory"},
		{"j1", "home/.pman", ".pmanx", "home/.pman", ".pmanx", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in+" "+tt.out, func(t *testing.T) {
			in, out, err := storeDirs(tt.jid, tt.in, tt.out)
			if tt.wantErr == "" {
				if err != nil || in != tt.wantIn || out != tt.wantOut {
					t.Errorf("storeDirs(%q, %q, %q) = %q, %q, %v; want %q, %q", tt.jid, tt.in, tt.out, in, out, err, tt.wantIn, tt.wantOut)
				}
				return
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.kind != eInvalid || !strings.Contains(ae.fields[tt.wantField], tt.wantErr) {
				t.Errorf("storeDirs(%q, %q, %q) error = %v; want %s: ...%s...", tt.jid, tt.in, tt.out, err, tt.wantField, tt.wantErr)
			}
		})
	}
}

// TestMissingInput: a missing input directory is a 400 on input_dir naming
// it, only where pman sees STOREBASE.
func TestMissingInput(t *testing.T) {
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, "j/in"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, base, rel string
		wantErr         bool
	}{
		{"exists", base, "j/in", false},
		{"missing", base, "j/nope", true},
		{"pfcon 2022 layout, missing", base, "key-j/incoming", true},
		{"STOREBASE not here", filepath.Join(base, "elsewhere"), "j/nope", false},
		{"STOREBASE a file", file, "j/nope", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := missingInput(tt.base, tt.rel)
			if !tt.wantErr {
				if err != nil {
					t.Errorf("missingInput(%q, %q) = %v; want nil", tt.base, tt.rel, err)
				}
				return
			}
			var ae *apiError
			want := filepath.Join(tt.base, tt.rel)
			if !errors.As(err, &ae) || ae.kind != eInvalid || !strings.Contains(ae.fields["input_dir"], want) {
				t.Errorf("missingInput(%q, %q) = %v; want a field error on input_dir naming %s", tt.base, tt.rel, err, want)
			}
		})
	}
}

// FuzzSafeRel checks that no accepted directory leaves STOREBASE.
func FuzzSafeRel(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/../..", "/", "//a//", ".", "a/./b", "...", "a/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dir string) {
		rel, err := safeRel("input_dir", dir)
		if err != nil {
			return
		}
		p := hostPath("/store", rel)
		if p == "/store" || !strings.HasPrefix(p, "/store/") {
			t.Errorf("safeRel(%q) = %q, which is %q: outside /store", dir, rel, p)
		}
	})
}

// TestReadStoreFile: a file is read only inside base, never through a
// symlink that leads out of it, and only its tail.
func TestReadStoreFile(t *testing.T) {
	base, outside := t.TempDir(), t.TempDir()
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(base, "log"), "0123456789")
	write(filepath.Join(outside, "secret"), "token")
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if b, err := readStoreFile(base, filepath.Join(base, "log"), 4); err != nil || string(b) != "6789" {
		t.Errorf("readStoreFile(log, 4) = %q, %v; want its last 4 bytes", b, err)
	}
	for _, p := range []string{filepath.Join(base, "link"), filepath.Join(outside, "secret"), filepath.Join(base, "..", filepath.Base(outside), "secret")} {
		if b, err := readStoreFile(base, p, 100); err == nil {
			t.Errorf("readStoreFile(%s) = %q; want an error: it leads out of %s", p, b, base)
		}
	}
	if _, err := readStoreFile(base, filepath.Join(base, "nothing"), 100); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readStoreFile(missing) error = %v; want fs.ErrNotExist", err)
	}
}
