package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// runtimeSection is the text of a WDL's runtime { ... } block.
func runtimeSection(t testing.TB, wdl string) string {
	t.Helper()
	i := strings.Index(wdl, "    runtime {\n")
	if i < 0 {
		t.Fatalf("no runtime section in\n%s", wdl)
	}
	j := strings.Index(wdl[i:], "\n    }\n")
	if j < 0 {
		t.Fatalf("runtime section not closed in\n%s", wdl)
	}
	return wdl[i : i+j+len("\n    }\n")]
}

// commandBody is the text between "command <<<" and ">>>".
func commandBody(t testing.TB, wdl string) string {
	t.Helper()
	i := strings.Index(wdl, "command <<<")
	if i < 0 {
		t.Fatalf("no command <<< in\n%s", wdl)
	}
	rest := wdl[i+len("command <<<"):]
	j := strings.Index(rest, ">>>")
	if j < 0 {
		t.Fatalf("no >>> in\n%s", wdl)
	}
	return rest[:j]
}

// withBindDirs is a runtime section pman 4 submitted (recorded), as we
// submit it for the same job: the inputdir and outputdir of the 2022
// layout after its sharedir line, which stays only if keepShare.
func withBindDirs(rt, shareDir string, keepShare bool) string {
	lines := strings.SplitAfter(rt, "\n")
	var b strings.Builder
	for _, l := range lines {
		if strings.HasPrefix(l, "        sharedir: ") {
			if keepShare {
				b.WriteString(l)
			}
			fmt.Fprintf(&b, "        inputdir: '%s/incoming'\n        outputdir: '%s/outgoing'\n", shareDir, shareDir)
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// ---- WDL rendering ----------------------------------------------------------

// TestRenderJobRuntimeMatchesRecorded renders jobs whose values reproduce
// what the Python pman submitted, and compares the runtime section with the
// recorded submittedFiles.workflow text byte for byte, plus the inputdir
// and outputdir we add. sharedir stays only in the 2022 layout
// (key-<jid>/incoming and key-<jid>/outgoing).
func TestRenderJobRuntimeMatchesRecorded(t *testing.T) {
	tests := []struct {
		file      string
		cfg       config
		spec      jobSpec
		keepShare bool
	}{
		{"metadata-notstarted.json",
			config{StoreBase: "/storebase", TimelimitMinutes: 50},
			jobSpec{JID: "vitamin-d", Image: "ghcr.io/fnndsc/pl-salute-the-sun:latest", Workers: 1, CPULimit: 2000, MemoryLimit: 5678, GPULimit: 2,
				Cmd:      []string{"/usr/local/bin/python", "/usr/local/bin/whatsgood", "--day", "sunny", incomingDir, outgoingDir},
				InputDir: "key-vitamin-d/incoming", OutputDir: "key-vitamin-d/outgoing"}, true},
		{"metadata-queued.json",
			config{StoreBase: "/storebase", TimelimitMinutes: 70},
			jobSpec{JID: "fruity-fruit", Image: "internal.gitlab:5678/fnndsc/pl-fruit:1.2.3", Workers: 3, CPULimit: 1, MemoryLimit: 789, GPULimit: 0,
				Cmd: []string{"fruit_machine", outgoingDir}, InputDir: "key-fruity-fruit/incoming", OutputDir: "key-fruity-fruit/outgoing"}, true},
		{"metadata-running.json",
			config{StoreBase: "/mounted/storebase", TimelimitMinutes: 5, SlurmPartition: "my-slurm-partition"},
			jobSpec{JID: "example-jid-1234", Image: "docker.io/fnndsc/pl-office-convert:0.0.1", Workers: 1, CPULimit: 1500, MemoryLimit: 4000,
				Cmd: []string{"office_convert", incomingDir, outgoingDir}, InputDir: "example-jid-1234/incoming", OutputDir: "example-jid-1234/outgoing"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c := &cromwellSched{cfg: &tt.cfg}
			wdl, err := c.renderJob(&tt.spec)
			if err != nil {
				t.Fatalf("renderJob: %v", err)
			}
			got := runtimeSection(t, wdl)
			recorded := runtimeSection(t, cwMetadata(t, tt.file).SubmittedFiles.Workflow)
			_, share, _ := strings.Cut(recorded, "sharedir: '")
			share, _, _ = strings.Cut(share, "'")
			want := withBindDirs(recorded, share, tt.keepShare)
			if got != want {
				t.Errorf("runtime section:\n%s\nwant (cwRecorded):\n%s", got, want)
			}
			for _, s := range []string{"version 1.0\n", "task plugin_instance {", "workflow ChRISJob {\n    call plugin_instance\n}"} {
				if !strings.Contains(wdl, s) {
					t.Errorf("WDL lacks %q:\n%s", s, wdl)
				}
			}
		})
	}
}

func TestRenderJobLimits(t *testing.T) {
	tests := []struct {
		cpu, mem   int
		ignore     bool
		cpuLine    string // "" when the attribute must be absent
		memoryLine string
	}{
		{1, 1, false, "cpu: '1'", "memory: '2M'"},
		{1000, 1000, false, "cpu: '1'", "memory: '1049M'"},
		{1001, 4000, false, "cpu: '2'", "memory: '4195M'"},
		{0, 0, false, "", ""},
		{4000, 4000, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("cpu %d memory %d ignore %v", tt.cpu, tt.mem, tt.ignore), func(t *testing.T) {
			c := &cromwellSched{cfg: &config{StoreBase: "/s", TimelimitMinutes: 1, IgnoreLimits: tt.ignore}}
			wdl, err := c.renderJob(&jobSpec{JID: "j", Image: "img", Workers: 1, CPULimit: tt.cpu, MemoryLimit: tt.mem,
				Cmd: []string{"x"}, InputDir: "key-j/incoming", OutputDir: "key-j/outgoing"})
			if err != nil {
				t.Fatal(err)
			}
			rt := runtimeSection(t, wdl)
			for attr, want := range map[string]string{"cpu:": tt.cpuLine, "memory:": tt.memoryLine} {
				has := strings.Contains(rt, "\n        "+attr)
				if want == "" && has || want != "" && !strings.Contains(rt, "\n        "+want+"\n") {
					t.Errorf("runtime\n%s\nwant %s line %q", rt, attr, want)
				}
			}
		})
	}
}

// wdlHostileArgs are arguments a plugin must receive exactly as given.
var wdlHostileArgs = []string{
	"plain",
	"two words",
	"",
	"it's",
	`"double"`,
	"'",
	"''",
	"~{x}",
	"${HOME}",
	"$HOME",
	"$(id)",
	"`id`",
	"~",
	"$",
	"{",
	"}",
	"~{",
	"$~{${",
	">>>",
	">>>>>>",
	"a>>>b",
	"<<<",
	"} #ENDCOMMAND",
	"back\\slash\\n",
	"tab\there",
	"line1\nline2",
	"line1\n        indented\n  less",
	"\n    >>>\n",
	"semi;colon && rm -rf / #",
	"ünïcödé ✓",
	"*?[a]",
}

// checkWDLInert fails when a command text holds something WDL would
// interpolate or that would end the heredoc command.
func checkWDLInert(t *testing.T, body string) {
	t.Helper()
	for _, bad := range []string{"~{", "${", ">>>"} {
		if strings.Contains(body, bad) {
			t.Errorf("command text contains %q, which WDL would not pass literally:\n%s", bad, body)
		}
	}
	// Cromwell strips the leading whitespace common to all non-blank lines.
	common := -1
	for _, l := range strings.Split(body, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " \t"))
		if common < 0 || n < common {
			common = n
		}
	}
	if common > 0 {
		t.Errorf("command lines share %d leading blanks that Cromwell would strip:\n%s", common, body)
	}
}

// shellRun runs a command text through a real POSIX shell, then prints
// the variables named by env, and answers what was printed, split at NULs.
// Tests make the command itself printf '%s\0' so that its words come back.
func shellRun(t *testing.T, body string, env ...string) []string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		needOrSkip(t, "no POSIX sh to check how the shell parses the command")
	}
	script := body
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		script += fmt.Sprintf("\nprintf '%%s\\0' \"$%s\"", k)
	}
	cmd := exec.Command(sh, "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v", script, err)
	}
	words := strings.Split(string(out), "\x00")
	return words[:len(words)-1]
}

func TestRenderWDLHostileArgs(t *testing.T) {
	for i, arg := range wdlHostileArgs {
		// The arguments are control characters and quotes: the subtest is
		// named by its place in the list, the messages quote the argument.
		t.Run(fmt.Sprintf("arg %d", i), func(t *testing.T) {
			// printf stands in for the plugin: it prints the words it gets.
			argv := []string{"printf", `%s\0`, "/usr/local/bin/plugin", "--opt", arg, arg + arg, "/share/outgoing"}
			env := []string{"WEIRD=" + arg, "HOME=/tmp"}
			wdl := renderWDL(wdlJob{Image: "fnndsc/pl-x:1.0", ShareDir: "/store/key-j", Env: env, Argv: argv, Workers: 1, Timelimit: 5})
			body := commandBody(t, wdl)
			checkWDLInert(t, body)

			got := shellRun(t, body, env...)
			want := append(append([]string{}, argv[2:]...), arg, "/tmp")
			if !slices.Equal(got, want) {
				t.Errorf("arg %q: the shell runs %q; want %q\nWDL:\n%s", arg, got, want, wdl)
			}

			image, back, err := parseWDL(wdl)
			if err != nil {
				t.Fatalf("arg %q: parseWDL: %v", arg, err)
			}
			if image != "fnndsc/pl-x:1.0" || !slices.Equal(back, argv) {
				t.Errorf("arg %q: parseWDL = %q, %q; want %q, %q", arg, image, back, "fnndsc/pl-x:1.0", argv)
			}
		})
	}
}

func TestShQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a", `'a'`},
		{"", `''`},
		{"it's", `'it'"'"'s'`},
		{"${x}", `'$''{x}'`},
		{"~{x}", `'~''{x}'`},
		{">>>>", `'>>''>>'`},
		{"$'{", `'$'"'"'{'`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			if got := shQuote(tt.in); got != tt.want {
				t.Errorf("shQuote(%q) = %s; want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseWDLRecorded(t *testing.T) {
	tests := []struct {
		file, image string
		argv        []string
	}{
		{"metadata-notstarted.json", "ghcr.io/fnndsc/pl-salute-the-sun:latest",
			[]string{"/usr/local/bin/python", "/usr/local/bin/whatsgood", "--day", "sunny", "/share/incoming", "/share/outgoing"}},
		{"metadata-running.json", "docker.io/fnndsc/pl-office-convert:0.0.1",
			[]string{"office_convert", "/share/incoming", "/share/outgoing"}},
		{"metadata-done.json", "ghcr.io/fnndsc/pl-office-convert:0.0.2",
			[]string{"/usr/local/bin/python", "/usr/local/bin/office_convert", "/share/incoming", "/share/outgoing"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			image, argv, err := parseWDL(cwMetadata(t, tt.file).SubmittedFiles.Workflow)
			if err != nil || image != tt.image || !slices.Equal(argv, tt.argv) {
				t.Errorf("parseWDL = %q, %q, %v; want %q, %q", image, argv, err, tt.image, tt.argv)
			}
		})
	}
}

func TestParseWDLBroken(t *testing.T) {
	for _, tt := range []struct{ name, wdl string }{
		{"empty", ""},
		{"no command", "version 1.0\ntask t {\n    runtime {\n        docker: 'x'\n    }\n}"},
		{"unclosed command", "version 1.0\ntask t {\n    command <<<\n'a'\n    runtime {\n        docker: 'x'\n    }\n}"},
		{"unterminated quote", "version 1.0\ntask t {\n    command <<<\n'unterminated\n    >>>\n    runtime {\n        docker: 'x'\n    }\n}"},
		{"no runtime", "version 1.0\ntask t {\n    command <<<\n'a'\n    >>>\n}"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if image, argv, err := parseWDL(tt.wdl); err == nil {
				t.Errorf("parseWDL(%q) = %q, %q, nil; want an error", tt.wdl, image, argv)
			}
		})
	}
}

func TestRenderJobRefuses(t *testing.T) {
	base := func() *jobSpec {
		return &jobSpec{JID: "j", Image: "fnndsc/pl-x", Workers: 1, Cmd: []string{"x"}, InputDir: "key-j/incoming", OutputDir: "key-j/outgoing"}
	}
	tests := []struct {
		name   string
		field  string
		change func(*jobSpec)
	}{
		{"image with a quote", "image", func(s *jobSpec) { s.Image = "img'; }" }},
		{"image with a placeholder", "image", func(s *jobSpec) { s.Image = "img ~{x}" }},
		{"image like a flag", "image", func(s *jobSpec) { s.Image = "-flag" }},
		{"env name with a dash", "env", func(s *jobSpec) { s.Env = []string{"A-B=1"} }},
		{"env name with a leading digit", "env", func(s *jobSpec) { s.Env = []string{"1A=1"} }},
		{"env value with a NUL", "env", func(s *jobSpec) { s.Env = []string{"A=\x00"} }},
		{"arg with a NUL", "args", func(s *jobSpec) { s.Cmd = []string{"x", "a\x00b"} }},
		{"input_dir with a placeholder", "input_dir", func(s *jobSpec) { s.InputDir = "feed ~{x}/in" }},
		{"output_dir with a quote", "output_dir", func(s *jobSpec) { s.OutputDir = "it's/out" }},
		{"output_dir with a dollar", "output_dir", func(s *jobSpec) { s.OutputDir = "a$b/out" }},
		{"output_dir with a backquote", "output_dir", func(s *jobSpec) { s.OutputDir = "a`id`/out" }},
		{"input_dir with a newline", "input_dir", func(s *jobSpec) { s.InputDir = "a\nb/in" }},
		{"jid with a space", "jid", func(s *jobSpec) { s.JID, s.InputDir, s.OutputDir = "j k", "key-j k/incoming", "key-j k/outgoing" }},
	}
	c := &cromwellSched{cfg: &config{StoreBase: "/sb", TimelimitMinutes: 5}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.change(s)
			_, err := c.renderJob(s)
			ae, ok := err.(*apiError)
			if !ok || ae.kind != eInvalid || ae.fields[tt.field] == "" {
				t.Errorf("renderJob(%+v) = %v; want a 400 on field %s", s, err, tt.field)
			}
		})
	}
	if _, err := c.renderJob(base()); err != nil {
		t.Errorf("renderJob(valid) = %v; want nil", err)
	}
}

// TestRenderJobBindDirs: the job's two directories go to the backend as
// inputdir and outputdir, whatever their layout; sharedir only in pfcon
// 2022's, where it is exactly the parent of both.
func TestRenderJobBindDirs(t *testing.T) {
	tests := []struct {
		name, in, out string
		share         string // "": no sharedir line
	}{
		{"2023+, no common parent", "SERVICES/PACS/MyPACS/1.2.3", "home/chris/feeds/feed_3/pl-dcm_5/data", ""},
		{"2023+, one feed", "home/chris/feeds/feed_3/pl-a_1/data", "home/chris/feeds/feed_3/pl-b_2/data", ""},
		{"a legal upload name", "home/chris/uploads/My Scan (1)", "home/chris/feeds/feed_4/pl-c_1/data", ""},
		{"2022", "key-j/incoming", "key-j/outgoing", "/sb/key-j"},
		{"key-<jid> but other names", "key-j/in", "key-j/outgoing", ""},
		{"another jid's key", "key-k/incoming", "key-k/outgoing", ""},
	}
	c := &cromwellSched{cfg: &config{StoreBase: "/sb", TimelimitMinutes: 5}}
	cmd := []string{"plugin", "--in", incomingDir, incomingDir, outgoingDir}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wdl, err := c.renderJob(&jobSpec{JID: "j", Image: "fnndsc/pl-x", Workers: 1, Cmd: cmd, InputDir: tt.in, OutputDir: tt.out})
			if err != nil {
				t.Fatalf("renderJob: %v", err)
			}
			rt := runtimeSection(t, wdl)
			for _, line := range []string{"inputdir: " + wdlString("/sb/"+tt.in), "outputdir: " + wdlString("/sb/"+tt.out)} {
				if !strings.Contains(rt, "\n        "+line+"\n") {
					t.Errorf("runtime lacks %s:\n%s", line, rt)
				}
			}
			if hasShare := strings.Contains(rt, "sharedir"); tt.share == "" && hasShare || tt.share != "" && !strings.Contains(rt, "\n        sharedir: '"+tt.share+"'\n") {
				t.Errorf("runtime:\n%s\nwant sharedir %q (empty: none)", rt, tt.share)
			}
			// The plugin's command is the same as on every other backend.
			if _, argv, err := parseWDL(wdl); err != nil || !slices.Equal(argv, cmd) {
				t.Errorf("command reads back as %q (%v); want %q", argv, err, cmd)
			}
		})
	}
}

// TestBindDirQuoting: every directory checkBindDir lets through reaches
// the README backend's bind intact: '${inputdir}' inside sbatch --wrap
// "...", which bash expands into the job script and sh runs again.
func TestBindDirQuoting(t *testing.T) {
	for _, d := range []string{"/sb/home/chris/uploads/My Scan (1)", "/sb/a b/c;d&e|f", "/sb/[x]*?", "/sb/#!{}<>", "/sb/ünï ✓", "/sb/~/x~y{z}"} {
		if msg := checkBindDir(d); msg != "" {
			t.Errorf("checkBindDir(%q) = %q; want it accepted", d, msg)
			continue
		}
		// Level 1: the submit-docker line; level 2: the --wrap script.
		wrap := shellRun(t, `printf '%s\0' "--bind '`+d+`':/share/incoming:ro"`)
		if len(wrap) != 1 {
			t.Fatalf("wrap of %q = %q; want one word", d, wrap)
		}
		got := shellRun(t, `printf '%s\0' `+wrap[0])
		if want := []string{"--bind", d + ":/share/incoming:ro"}; !slices.Equal(got, want) {
			t.Errorf("bind of %q reaches apptainer as %q; want %q", d, got, want)
		}
	}
	for _, d := range []string{"a'b", `a"b`, `a\b`, "a$b", "a`b", "a:b", "a,b", "a\nb", "a~{b}"} {
		if checkBindDir(d) == "" {
			t.Errorf("checkBindDir(%q) = \"\"; want it refused", d)
		}
	}
}

func TestWDLMemoryMiB(t *testing.T) {
	c := &cromwellSched{cfg: &config{StoreBase: "/sb", TimelimitMinutes: 5}}
	for _, mib := range []int{1, 2, 200, 1000, 4000, 5678, 1 << 20} {
		wdl, err := c.renderJob(&jobSpec{JID: "j", Image: "img", Workers: 1, MemoryLimit: mib, Cmd: []string{"x"}, InputDir: "a", OutputDir: "b"})
		if err != nil {
			t.Fatal(err)
		}
		if got := wdlMemoryMiB(wdl); got != mib {
			t.Errorf("wdlMemoryMiB(rendered with %d MiB) = %d", mib, got)
		}
	}
	if got := wdlMemoryMiB(cwMetadata(t, "metadata-failed.json").SubmittedFiles.Workflow); got != 0 {
		t.Errorf("wdlMemoryMiB(no memory line) = %d; want 0", got)
	}
}

func TestCheckPartition(t *testing.T) {
	for _, p := range []string{"short", "gpu-a100", "my_part.1", "short,long"} {
		if msg := checkPartition(p); msg != "" {
			t.Errorf("checkPartition(%q) = %q; want ok", p, msg)
		}
	}
	for _, p := range []string{"a b", "x;y", "p'", "~{x}", "${x}", "a,", ",a", "a,,b", "p "} {
		if checkPartition(p) == "" {
			t.Errorf("checkPartition(%q) = \"\"; want it refused", p)
		}
	}
}
