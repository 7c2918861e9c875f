package main

// Requests: a POST body, read and checked once into a jobSpec, and the
// command the job runs.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// jobSpec is a validated POST body, with the command already built.
type jobSpec struct {
	JID         string
	Image       string
	Type        string // ds, fs or ts
	Auid        string
	Workers     int
	CPULimit    int // millicores
	MemoryLimit int // MiB
	GPULimit    int
	Env         []string // KEY=value, HOME=/tmp appended by ENABLE_HOME_WORKAROUND
	Cmd         []string // entrypoint + localized args + /share/incoming? + /share/outgoing
	// InputDir and OutputDir are relative to STOREBASE and checked by
	// storeDirs: their text never leaves it. A backend's create resolves
	// their links with resolveJobDirs where pman sees the store.
	InputDir  string
	OutputDir string
}

// Mount points inside every job.
const (
	incomingDir = "/share/incoming"
	outgoingDir = "/share/outgoing"
)

// missing is flask-restful's word for a required field that is absent, as
// pman answered it.
const missing = "Missing required parameter in the JSON body or the post body or the query string"

// decodeJob returns the job a POST body asks for. Every bad field is
// reported at once, flask-restful style: {"message": {"field": "problem", ...}}.
func decodeJob(body []byte, cfg *config) (*jobSpec, error) {
	b, err := newBodyReader(body)
	if err != nil {
		return nil, err
	}
	jid := strings.TrimLeft(b.str("jid", true), "/")
	if msg := checkJID(jid); msg != "" {
		b.bad("jid", msg)
	}
	s := &jobSpec{
		JID:         jid,
		Image:       b.str("image", true),
		Type:        b.str("type", true),
		Auid:        b.str("auid", true),
		Workers:     b.int("number_of_workers", 1),
		CPULimit:    b.int("cpu_limit", 0),
		MemoryLimit: b.int("memory_limit", 0),
		GPULimit:    b.int("gpu_limit", 0),
		Env:         b.list("env", false),
	}
	if img, why := checkImage(cfg.ImageAllowlist, s.Image); why != "" {
		b.bad("image", why)
	} else {
		s.Image = img
	}
	if s.Type != "ds" && s.Type != "fs" && s.Type != "ts" {
		b.bad("type", fmt.Sprintf("%q is not a valid choice (ds, fs, ts)", s.Type))
	}
	for _, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			b.bad("env", fmt.Sprintf("%q is not KEY=value", e))
			break
		}
	}
	args := b.list("args", true)
	pathFlags := b.list("args_path_flags", false)
	entrypoint := b.list("entrypoint", true)
	if len(entrypoint) == 0 {
		b.bad("entrypoint", "must not be empty")
	}
	inputDir := b.str("input_dir", false)
	outputDir := b.str("output_dir", false)
	if b.problems != nil {
		return nil, &apiError{kind: eInvalid, fields: b.problems}
	}
	if cfg.HomeWorkaround {
		s.Env = append(s.Env, "HOME=/tmp")
	}
	if s.InputDir, s.OutputDir, err = storeDirs(jid, inputDir, outputDir); err != nil {
		return nil, err
	}
	s.Cmd = buildCmd(entrypoint, args, pathFlags, s.Type)
	return s, nil
}

// bodyReader reads the fields of a JSON object and keeps the first problem
// of each bad field. Its methods return the zero value for a bad field.
type bodyReader struct {
	raw      map[string]json.RawMessage
	problems map[string]string // nil while there are none
}

// newBodyReader returns a reader of body, or an eInvalid error when body is
// not a JSON object.
func newBodyReader(body []byte) (*bodyReader, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, errorf(eInvalid, "request body is not a JSON object: %v", err)
	}
	return &bodyReader{raw: raw}, nil
}

// bad records problem for the field, unless it has one already.
func (b *bodyReader) bad(name, problem string) {
	if b.problems[name] != "" {
		return
	}
	if b.problems == nil {
		b.problems = map[string]string{}
	}
	b.problems[name] = problem
}

// field returns the field's raw value, and false for an absent field or a
// JSON null; a required one is then reported missing.
func (b *bodyReader) field(name string, required bool) (json.RawMessage, bool) {
	v, ok := b.raw[name]
	if !ok || string(v) == "null" {
		if required {
			b.bad(name, missing)
		}
		return nil, false
	}
	return v, true
}

// str returns a string field; a required one must not be blank.
func (b *bodyReader) str(name string, required bool) string {
	v, ok := b.field(name, required)
	if !ok {
		return ""
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		b.bad(name, "must be a string")
		return ""
	}
	if required && strings.TrimSpace(s) == "" {
		b.bad(name, "must not be empty")
	}
	return s
}

// list returns a field that is a list of strings.
func (b *bodyReader) list(name string, required bool) []string {
	v, ok := b.field(name, required)
	if !ok {
		return nil
	}
	var l []string
	if err := json.Unmarshal(v, &l); err != nil {
		b.bad(name, "must be a list of strings")
		return nil
	}
	return l
}

// int returns a required integer field between min and 1<<31: a JSON
// integer or a string of digits, as Python's int() reads them.
func (b *bodyReader) int(name string, min int) int {
	v, ok := b.field(name, true)
	if !ok {
		return 0
	}
	var n json.Number
	var s string
	if json.Unmarshal(v, &s) == nil {
		n = json.Number(strings.TrimSpace(s))
	} else if err := json.Unmarshal(v, &n); err != nil {
		b.bad(name, "must be an integer")
		return 0
	}
	i, err := strconv.Atoi(strings.TrimPrefix(string(n), "+"))
	if err != nil {
		b.bad(name, fmt.Sprintf("invalid literal for int(): %s", v))
		return 0
	}
	// The bound keeps MiB<<20 and millicores*1e6 inside an int64.
	const max = 1 << 31
	if i < min || i > max {
		b.bad(name, fmt.Sprintf("must be between %d and %d, not %d", min, max, i))
	}
	return i
}

// checkJID returns what is wrong with a jid, or "". A jid names a scheduler
// object and, for pfcon of 2022, a directory (key-<jid>), so it must be one
// plain path segment. Each backend adds its scheduler's own naming rules.
func checkJID(jid string) string {
	switch {
	case jid == "":
		return "must not be empty"
	case len(jid) > 253:
		return "must be at most 253 characters"
	case jid == "." || jid == "..":
		return fmt.Sprintf("%q is not a name", jid)
	case strings.ContainsAny(jid, "/\\:"):
		return fmt.Sprintf("%q must not contain '/', '\\' or ':'", jid)
	}
	for _, r := range jid {
		if r < 0x20 || r == 0x7f {
			return "must not contain control characters"
		}
	}
	return ""
}

// localize returns args with the argument after each path flag replaced by
// incomingDir.
func localize(args, pathFlags []string) []string {
	flags := make(map[string]bool, len(pathFlags))
	for _, f := range pathFlags {
		flags[f] = true
	}
	out := make([]string, len(args))
	copy(out, args)
	for i := 0; i < len(out)-1; i++ {
		if flags[out[i]] {
			out[i+1] = incomingDir
			i++
		}
	}
	return out
}

// buildCmd returns the command a job runs, as pman built it.
func buildCmd(entrypoint, args, pathFlags []string, typ string) []string {
	cmd := append([]string{}, entrypoint...)
	cmd = append(cmd, localize(args, pathFlags)...)
	if typ == "ds" {
		cmd = append(cmd, incomingDir)
	}
	return append(cmd, outgoingDir)
}
