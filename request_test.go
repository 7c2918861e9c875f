package main

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLocalize(t *testing.T) {
	tests := []struct {
		name              string
		args, flags, want []string
	}{
		{"no args", nil, nil, []string{}},
		{"no path flags", []string{"--x", "1"}, nil, []string{"--x", "1"}},
		{"one flag", []string{"--dir", "/home/u/x", "--n", "2"}, []string{"--dir"}, []string{"--dir", incomingDir, "--n", "2"}},
		{"two flags", []string{"--a", "p", "--b", "q"}, []string{"--a", "--b"}, []string{"--a", incomingDir, "--b", incomingDir}},
		// A flag as the last argument has nothing after it to replace.
		{"flag last", []string{"--n", "2", "--dir"}, []string{"--dir"}, []string{"--n", "2", "--dir"}},
		// The replaced value is not itself read as a flag.
		{"flag as value", []string{"--dir", "--dir", "x"}, []string{"--dir"}, []string{"--dir", incomingDir, "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := localize(tt.args, tt.flags)
			if !slices.Equal(got, tt.want) {
				t.Errorf("localize(%q, %q) = %q; want %q", tt.args, tt.flags, got, tt.want)
			}
		})
	}
}

func TestBuildCmd(t *testing.T) {
	tests := []struct {
		typ  string
		want []string
	}{
		{"fs", []string{"python3", "/usr/local/bin/app", "--dir", incomingDir, outgoingDir}},
		{"ds", []string{"python3", "/usr/local/bin/app", "--dir", incomingDir, incomingDir, outgoingDir}},
		{"ts", []string{"python3", "/usr/local/bin/app", "--dir", incomingDir, outgoingDir}},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			ep := []string{"python3", "/usr/local/bin/app"}
			got := buildCmd(ep, []string{"--dir", "x"}, []string{"--dir"}, tt.typ)
			if !slices.Equal(got, tt.want) {
				t.Errorf("buildCmd(type %s) = %q; want %q", tt.typ, got, tt.want)
			}
			if ep[1] != "/usr/local/bin/app" || len(ep) != 2 {
				t.Errorf("buildCmd changed its entrypoint argument: %q", ep)
			}
		})
	}
}

// validBody returns a pfcon 2023+ POST body; tests change one field at a time.
func validBody() map[string]any {
	return map[string]any{
		"jid": "chris-jid-1", "args": []string{"--saveinputmeta", "--dir", "/x"},
		"args_path_flags": []string{"--dir"}, "auid": "cube", "number_of_workers": 1,
		"cpu_limit": 1000, "memory_limit": 300, "gpu_limit": 0,
		"image": "fnndsc/pl-simplefsapp", "entrypoint": []string{"simplefsapp"},
		"type": "fs", "env": []string{"A=1"},
		"input_dir": "/home/u/feed_1/incoming/", "output_dir": "home/u/feed_1/outgoing",
		"unknown_field": map[string]any{"ignored": true},
	}
}

func TestDecodeJob(t *testing.T) {
	s, err := decodeJob(mustJSON(t, validBody()), &config{})
	if err != nil {
		t.Fatalf("decodeJob(valid) error: %v", err)
	}
	want := &jobSpec{
		JID: "chris-jid-1", Image: "fnndsc/pl-simplefsapp", Type: "fs", Auid: "cube",
		Workers: 1, CPULimit: 1000, MemoryLimit: 300, GPULimit: 0, Env: []string{"A=1"},
		Cmd:      []string{"simplefsapp", "--saveinputmeta", "--dir", incomingDir, outgoingDir},
		InputDir: "home/u/feed_1/incoming", OutputDir: "home/u/feed_1/outgoing",
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("decodeJob(valid) = %+v; want %+v", s, want)
	}
}

func TestDecodeJobForms(t *testing.T) {
	tests := []struct {
		name  string
		cfg   config
		edit  func(b map[string]any)
		check func(s *jobSpec) bool
	}{
		{"digit strings", config{}, func(b map[string]any) {
			b["number_of_workers"], b["cpu_limit"], b["memory_limit"], b["gpu_limit"] = "2", " 1500", "+64", "0"
		}, func(s *jobSpec) bool { return s.Workers == 2 && s.CPULimit == 1500 && s.MemoryLimit == 64 }},
		{"leading slash of jid", config{}, func(b map[string]any) { b["jid"] = "/chris-jid-1" },
			func(s *jobSpec) bool { return s.JID == "chris-jid-1" }},
		{"2022 request without dirs", config{}, func(b map[string]any) { delete(b, "input_dir"); delete(b, "output_dir") },
			func(s *jobSpec) bool {
				return s.InputDir == "key-chris-jid-1/incoming" && s.OutputDir == "key-chris-jid-1/outgoing"
			}},
		{"no env, no path flags", config{}, func(b map[string]any) { delete(b, "env"); delete(b, "args_path_flags") },
			func(s *jobSpec) bool { return len(s.Env) == 0 && s.Cmd[2] == "--dir" && s.Cmd[3] == "/x" }},
		{"null optional", config{}, func(b map[string]any) { b["env"] = nil },
			func(s *jobSpec) bool { return len(s.Env) == 0 }},
		{"empty args", config{}, func(b map[string]any) { b["args"] = []string{} },
			func(s *jobSpec) bool { return slices.Equal(s.Cmd, []string{"simplefsapp", outgoingDir}) }},
		{"ds", config{}, func(b map[string]any) { b["type"] = "ds" },
			func(s *jobSpec) bool { return s.Cmd[len(s.Cmd)-2] == incomingDir }},
		{"env value with =", config{}, func(b map[string]any) { b["env"] = []string{"A=b=c", "EMPTY="} },
			func(s *jobSpec) bool { return slices.Equal(s.Env, []string{"A=b=c", "EMPTY="}) }},
		{"ENABLE_HOME_WORKAROUND", config{HomeWorkaround: true}, func(b map[string]any) {},
			func(s *jobSpec) bool { return slices.Equal(s.Env, []string{"A=1", "HOME=/tmp"}) }},
		{"ENABLE_HOME_WORKAROUND without env", config{HomeWorkaround: true}, func(b map[string]any) { delete(b, "env") },
			func(s *jobSpec) bool { return slices.Equal(s.Env, []string{"HOME=/tmp"}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := validBody()
			tt.edit(b)
			s, err := decodeJob(mustJSON(t, b), &tt.cfg)
			if err != nil {
				t.Fatalf("decodeJob error: %v", err)
			}
			if !tt.check(s) {
				t.Errorf("decodeJob = %+v", s)
			}
		})
	}
}

// deleteField as a value in TestDecodeJobErrors: the field is absent.
const deleteField = "\x00delete"

func TestDecodeJobErrors(t *testing.T) {
	tests := []struct {
		field string
		value any // deleteField: the field is absent
		want  string
	}{
		{"jid", deleteField, missing},
		{"jid", nil, missing},
		{"jid", "", "must not be empty"},
		{"jid", "/", "must not be empty"},
		{"jid", 12, "must be a string"},
		{"jid", "a/b", "must not contain"},
		{"jid", "..", "is not a name"},
		{"jid", "a\nb", "control characters"},
		{"args", deleteField, missing},
		{"args", "--x", "must be a list of strings"},
		{"args", []any{"a", 1}, "must be a list of strings"},
		{"args_path_flags", "--dir", "must be a list of strings"},
		{"auid", deleteField, missing},
		{"number_of_workers", deleteField, missing},
		{"number_of_workers", 0, "must be between 1 and"},
		{"number_of_workers", "two", "invalid literal for int()"},
		{"number_of_workers", 1.5, "invalid literal for int()"},
		{"cpu_limit", -1, "must be between 0 and"},
		{"memory_limit", "99999999999999", "must be between 0 and 2147483648"},
		{"cpu_limit", true, "must be an integer"},
		{"memory_limit", []int{1}, "must be an integer"},
		{"gpu_limit", deleteField, missing},
		{"image", deleteField, missing},
		{"image", " ", "must not be empty"},
		{"entrypoint", deleteField, missing},
		{"entrypoint", nil, missing},
		{"entrypoint", []string{}, "must not be empty"},
		{"entrypoint", "python3", "must be a list of strings"},
		{"type", deleteField, missing},
		{"type", " ", "must not be empty"},
		{"type", "xs", "is not a valid choice"},
		{"env", []string{"NOEQUALS"}, "is not KEY=value"},
		{"env", []string{"=v"}, "is not KEY=value"},
		{"env", []any{"A=1", 1}, "must be a list of strings"},
		{"input_dir", "../../etc", "must stay inside STOREBASE"},
		{"input_dir", "a/../../b", "must stay inside STOREBASE"},
		{"input_dir", 1, "must be a string"},
		{"output_dir", "/", "is STOREBASE itself"},
		{"output_dir", deleteField, missing},
		{"output_dir", `a\b`, "must not contain"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%v", tt.field, tt.value), func(t *testing.T) {
			b := validBody()
			if tt.value == deleteField {
				delete(b, tt.field)
			} else {
				b[tt.field] = tt.value
			}
			_, err := decodeJob(mustJSON(t, b), &config{})
			var ae *apiError
			if !errors.As(err, &ae) || ae.kind != eInvalid {
				t.Fatalf("error %v; want an eInvalid apiError", err)
			}
			if len(ae.fields) != 1 || !strings.Contains(ae.fields[tt.field], tt.want) {
				t.Errorf("problems %q; want only %s: ...%q...", ae.fields, tt.field, tt.want)
			}
		})
	}
	for _, body := range []string{"", "[]", "{", `"x"`, "null"} {
		t.Run(fmt.Sprintf("body %q", body), func(t *testing.T) {
			_, err := decodeJob([]byte(body), &config{})
			if code, _ := errorStatus(err); code != 400 {
				t.Errorf("decodeJob(%q): status %d; want 400", body, code)
			}
		})
	}
	// Every bad field is reported at once.
	_, err := decodeJob([]byte(`{"jid": "x"}`), &config{})
	var ae *apiError
	if !errors.As(err, &ae) || len(ae.fields) != 9 {
		t.Errorf("decodeJob({jid}) problems = %v; want the 9 missing required fields", err)
	}
}

func BenchmarkDecodeJob(b *testing.B) {
	body := mustJSON(b, validBody())
	cfg := &config{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeJob(body, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
