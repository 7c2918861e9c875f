package main

// The directory policy (resolveJobDirs) through every backend: a job that
// left symlinks in its output directory, as job A in issue 17 did, cannot
// have pman mount what they lead to into job B. Each refused POST is a 400
// on the field, names the link, and leaves nothing behind: no scheduler
// object, no directory where the link leads.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// symlinkRow is one request whose directory goes through a link a job left.
type symlinkRow struct {
	name string
	// link is the symlink job A left, relative to its job directory <jid>,
	// and where it points ("OUTSIDE": a directory out of STOREBASE).
	link, target string
	// in and out are job B's directories below <jid>; "" keeps the
	// request's own.
	in, out string
	// field is the one refused; "" for a request that must run.
	field string
	// made is a path, relative to where the link leads, that must not be
	// created by a refused job.
	made string
}

var symlinkRows = []symlinkRow{
	{name: "absolute link as input_dir", link: "out/root", target: "OUTSIDE", in: "out/root", field: "input_dir"},
	{name: "absolute link above output_dir", link: "out/root", target: "OUTSIDE", out: "out/root/made-by-the-job", field: "output_dir", made: "made-by-the-job"},
	{name: "relative link as input_dir", link: "out/up", target: "../../..", in: "out/up", field: "input_dir"},
	{name: "relative link above output_dir", link: "out/up", target: "../../..", out: "out/up/MADE", field: "output_dir", made: "MADE"},
	{name: "link in a middle component of input_dir", link: "mid", target: "OUTSIDE", in: "mid/data", field: "input_dir"},
	{name: "link in a middle component of output_dir", link: "mid", target: "OUTSIDE", out: "mid/made-by-the-job", field: "output_dir", made: "made-by-the-job"},
	{name: "link into .pman", link: "out/records", target: "../../.pman", out: "out/records/slurm/made-by-the-job", field: "output_dir"},
	{name: "link that stays inside", link: "out/previous", target: "../in", in: "out/previous"},
}

func TestContractSymlink(t *testing.T) {
	for _, b := range contractBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := b.start(t, nil)
			for _, row := range symlinkRows {
				t.Run(row.name, func(t *testing.T) {
					t.Parallel()
					contractSymlink(t, e, row)
				})
			}
		})
	}
}

func contractSymlink(t *testing.T, e *contractEnv, row symlinkRow) {
	jid := e.newJID(t, "link")
	body := e.body(t, jid, actSucceed)
	outside := t.TempDir()
	if err := os.Mkdir(filepath.Join(outside, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := strings.Replace(row.target, "OUTSIDE", outside, 1)
	link := filepath.Join(e.store, jid, row.link)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if row.in != "" {
		body["input_dir"] = jid + "/" + row.in
	}
	if row.out != "" {
		body["output_dir"] = jid + "/" + row.out
	}
	if row.field == "" {
		e.submit(t, body)
		if e.run != nil {
			e.run(t, jid, actSucceed)
		}
		if m := e.finish(t, jid); m["status"] != statusSuccess {
			t.Errorf("GET = %v; want finishedSuccessfully", m)
		}
		if e.runs {
			out := filepath.Join(e.store, fmt.Sprint(body["output_dir"]), contractInput)
			if b, err := os.ReadFile(out); err != nil || string(b) != "contract input\n" {
				t.Errorf("output %s = %q, %v; want the input, read through the link, copied", out, b, err)
			}
		}
		return
	}
	code, m := call(t, "POST", e.url+"/api/v1/", body)
	fields, _ := m["message"].(map[string]any)
	msg := fmt.Sprint(fields[row.field])
	if code != http.StatusBadRequest || !strings.Contains(msg, row.link+" -> "+target) {
		t.Errorf("POST through the link %s -> %s = %d %v; want 400 on %s naming the link", row.link, target, code, m, row.field)
	}
	if e.exists(t, jid) {
		t.Errorf("the scheduler holds %s after a refused POST", jid)
	}
	if row.made != "" {
		where := target
		if !filepath.IsAbs(where) {
			where = filepath.Join(filepath.Dir(link), target)
		}
		if _, err := os.Lstat(filepath.Join(where, row.made)); err == nil {
			t.Errorf("a refused job made %s", filepath.Join(where, row.made))
		}
	}
}
