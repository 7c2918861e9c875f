package main

// The WDL document a Cromwell job is: rendering it from a job, and reading a
// submitted one back. Kept apart from cromwell.go, the REST side.

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// wdlJob is what the submitted WDL says.
type wdlJob struct {
	Image string
	// InputDir and OutputDir are the job's directories on the cluster, for
	// the backend to bind at /share/incoming (read-only) and
	// /share/outgoing.
	InputDir, OutputDir string
	// ShareDir is STOREBASE/key-<jid> in pfcon 2022's layout, for sites
	// whose backend still binds sharedir at /share; "" otherwise.
	ShareDir  string
	Env       []string // KEY=value
	Argv      []string
	CPU       int // cores; 0: not set
	MemoryMB  int // 0: not set
	GPU       int
	Workers   int
	Timelimit int // minutes
	Partition string
}

// checkScriptJob returns the field error of a job that a shell script
// cannot carry: an image or environment the script would have to trust,
// or a NUL. The Cromwell and SLURM backends both run jobs from a script.
func checkScriptJob(j *jobSpec, backend string) error {
	if !validImage(j.Image) {
		return fieldError("image", fmt.Sprintf("%q is not an image reference (letters, digits and . _ - / : @ only)", j.Image))
	}
	for _, e := range j.Env {
		k, v, _ := strings.Cut(e, "=")
		if !shellName(k) {
			return fieldError("env", fmt.Sprintf("%q: with %s a variable name must be letters, digits and '_', not starting with a digit", e, backend))
		}
		if strings.ContainsRune(v, 0) {
			return fieldError("env", fmt.Sprintf("%q must not contain NUL", k))
		}
	}
	for _, a := range j.Cmd {
		if strings.ContainsRune(a, 0) {
			return fieldError("args", "an argument must not contain NUL: no process can receive it")
		}
	}
	return nil
}

// renderJob checks what the WDL cannot carry and renders it.
func (c *cromwellSched) renderJob(j *jobSpec) (string, error) {
	if err := checkScriptJob(j, "Cromwell"); err != nil {
		return "", err
	}
	for _, d := range []struct{ field, dir string }{{"input_dir", j.InputDir}, {"output_dir", j.OutputDir}} {
		if msg := checkBindDir(d.dir); msg != "" {
			return "", fieldError(d.field, msg)
		}
	}
	w := wdlJob{
		Image:     j.Image,
		InputDir:  path.Join(c.cfg.StoreBase, j.InputDir),
		OutputDir: path.Join(c.cfg.StoreBase, j.OutputDir),
		Env:       j.Env,
		Argv:      j.Cmd,
		GPU:       j.GPULimit,
		Workers:   j.Workers,
		Timelimit: c.cfg.TimelimitMinutes,
		Partition: c.cfg.SlurmPartition,
	}
	if key := "key-" + j.JID; j.InputDir == key+"/incoming" && j.OutputDir == key+"/outgoing" {
		// pfcon 2022: /share/incoming and /share/outgoing are exactly the
		// two directories below sharedir, so a site configuration of pman
		// 4's time (sharedir bound at /share) still runs the job right.
		if msg := checkShareDir(key); msg != "" {
			return "", fieldError("jid", msg+" (the 2022 layout puts the jid into sharedir, STOREBASE/key-<jid>)")
		}
		w.ShareDir = path.Join(c.cfg.StoreBase, key)
	}
	if !c.cfg.IgnoreLimits {
		w.CPU = ceilDiv(j.CPULimit, 1000)
		// MiB to the MB SLURM counts in: x 1.048576, rounded up.
		w.MemoryMB = ceilDiv(j.MemoryLimit*1048576, 1000000)
	}
	return renderWDL(w), nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func validImage(s string) bool {
	if s == "" || !isAlnum(rune(s[0])) {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) && !strings.ContainsRune("._-/:@", r) {
			return false
		}
	}
	return true
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

func shellName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !isAlnum(r) && r != '_' {
			return false
		}
	}
	return true
}

// checkShareDir returns why a path cannot be part of sharedir (or STOREBASE,
// which every bind starts with), or "". Site configurations of pman 4's
// time put sharedir unquoted into a submit command line (--bind
// ${sharedir}:/share), and it travels in a WDL string (which interpolates
// ~{ and ${): keep to harmless characters.
func checkShareDir(d string) string {
	for _, r := range d {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" \t'\"\\$~{}`;&|<>*?[]()#!", r) {
			return fmt.Sprintf("%q: with Cromwell this path must not contain whitespace, quotes or shell/WDL special characters", d)
		}
	}
	return ""
}

// checkBindDir returns why a job directory cannot reach the backend's binds
// as the inputdir or outputdir runtime attribute, or "". The README's
// backend quotes them ('${inputdir}' inside sbatch --wrap "..."), so
// spaces and brackets are fine; what would end those quotes, expand in
// them, interpolate in a WDL string or split a --bind (':' and ',') is not.
func checkBindDir(d string) string {
	for _, r := range d {
		if r < 0x20 || r == 0x7f || strings.ContainsRune("'\"\\$`:,", r) {
			return fmt.Sprintf("%q: with Cromwell a job directory must not contain control characters, quotes, '\\', '$', '`', ':' or ','", d)
		}
	}
	if strings.Contains(d, "~{") {
		return fmt.Sprintf("%q: with Cromwell a job directory must not contain \"~{\" (a WDL placeholder)", d)
	}
	return ""
}

// checkPartition returns why SLURM_PARTITION cannot be used, or "". It goes
// into a WDL string and, in the README's backend, unquoted into sbatch -p,
// which takes a comma-separated list of partition names.
func checkPartition(p string) string {
	for _, name := range strings.Split(p, ",") {
		if name == "" {
			return fmt.Sprintf("%q: an empty partition name", p)
		}
		for _, r := range name {
			if !isAlnum(r) && !strings.ContainsRune("_-.", r) {
				return fmt.Sprintf("%q: a partition name is letters, digits, '_', '-' and '.', several separated by ','", p)
			}
		}
	}
	return ""
}

// wdlMemoryMiB reads back the memory limit, in MiB, from the runtime
// section renderWDL wrote ('<MB>M'); 0 when there is none.
func wdlMemoryMiB(wdl string) int {
	i := strings.Index(wdl, "\n        memory: '")
	if i < 0 {
		return 0
	}
	v := wdl[i+len("\n        memory: '"):]
	end := strings.Index(v, "M'")
	if end < 0 {
		return 0
	}
	mb, err := strconv.Atoi(v[:end])
	if err != nil || mb <= 0 {
		return 0
	}
	// renderJob rounded MiB x 1.048576 up by less than one MB.
	return mb * 1000000 / 1048576
}

// renderWDL writes the one-task workflow. The runtime section has the
// layout of what pman submitted (see testdata/cromwell).
//
// The command section uses the heredoc form, command <<< >>>: there only
// ~{...} is a placeholder ("${" is bash's, left alone), and only ">>>" ends
// the section, where the brace form ends at any unbalanced "}". Every word
// is quoted by shQuote, which also makes sure "~{", "${" and ">>>" never
// appear in the text. The lines start at column 0 on purpose: Cromwell
// strips the whitespace common to all command lines, and an argument with
// a newline followed by spaces would otherwise lose those spaces.
func renderWDL(w wdlJob) string {
	var b strings.Builder
	b.WriteString("version 1.0\n\ntask plugin_instance {\n    command <<<\n")
	for _, e := range w.Env {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&b, "export %s=%s\n", k, shQuote(v))
	}
	words := make([]string, len(w.Argv))
	for i, a := range w.Argv {
		words[i] = shQuote(a)
	}
	b.WriteString(strings.Join(words, " "))
	b.WriteString("\n    >>>\n    runtime {\n")
	attr := func(k, v string) { fmt.Fprintf(&b, "        %s: %s\n", k, wdlString(v)) }
	attr("docker", w.Image)
	if w.ShareDir != "" {
		attr("sharedir", w.ShareDir)
	}
	attr("inputdir", w.InputDir)
	attr("outputdir", w.OutputDir)
	if w.CPU > 0 {
		attr("cpu", strconv.Itoa(w.CPU))
	}
	if w.MemoryMB > 0 {
		attr("memory", strconv.Itoa(w.MemoryMB)+"M")
	}
	attr("gpu_limit", strconv.Itoa(w.GPU))
	attr("number_of_workers", strconv.Itoa(w.Workers))
	attr("timelimit", strconv.Itoa(w.Timelimit))
	if w.Partition != "" {
		attr("slurm_partition", w.Partition)
	}
	b.WriteString("    }\n}\n\nworkflow ChRISJob {\n    call plugin_instance\n}\n")
	return b.String()
}

// shQuote makes s one shell word, single-quoted (inside which the shell
// interprets nothing). A quote in s is written "'" and, where s would put
// "${", "~{" or ">>>" into the WDL text, the quote is closed and reopened
// between the two characters: the shell joins the pieces back into s, WDL
// sees no placeholder.
func shQuote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	var p1, p2 rune // the last two characters written
	for _, r := range s {
		switch {
		case r == '\'':
			b.WriteString(`'"'"'`)
			p1, p2 = 0, '\''
			continue
		case r == '{' && (p2 == '$' || p2 == '~'), r == '>' && p1 == '>' && p2 == '>':
			b.WriteString("''")
			p1, p2 = '\'', '\''
		}
		b.WriteRune(r)
		p1, p2 = p2, r
	}
	b.WriteByte('\'')
	return b.String()
}

// wdlString is a WDL single-quoted string literal. Values reaching it are
// checked (validImage, checkShareDir, checkBindDir, checkPartition,
// numbers);
// quotes and backslashes are escaped all the same.
func wdlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// parseWDL reads image and command back from a submitted WDL: ours, and
// the brace form (command { ... } #ENDCOMMAND) the Python pman submitted,
// whose workflows a replaced pman may still be asked about.
func parseWDL(wdl string) (image string, argv []string, err error) {
	var body, rest string
	if i := strings.Index(wdl, "command <<<"); i >= 0 {
		rest = wdl[i+len("command <<<"):]
		end := strings.Index(rest, ">>>")
		if end < 0 {
			return "", nil, errors.New("command <<< without >>>")
		}
		body, rest = rest[:end], rest[end+3:]
	} else if i := strings.Index(wdl, "command {"); i >= 0 {
		rest = wdl[i+len("command {"):]
		end := strings.Index(rest, "} #ENDCOMMAND")
		if end < 0 {
			end = strings.Index(rest, "}")
		}
		if end < 0 {
			return "", nil, errors.New("command { without }")
		}
		body, rest = rest[:end], rest[end+1:]
	} else {
		return "", nil, errors.New("no command section")
	}
	lines, err := shellWords(body)
	if err != nil {
		return "", nil, err
	}
	for _, l := range lines {
		if len(l) > 0 && l[0] != "export" {
			argv = append(argv, l...)
		}
	}
	i := strings.Index(rest, "runtime {")
	if i < 0 {
		return "", nil, errors.New("no runtime section")
	}
	for _, line := range strings.Split(rest[i+len("runtime {"):], "\n") {
		line = strings.TrimSpace(line)
		if line == "}" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "docker" {
			image = unquoteWDL(strings.TrimSpace(v))
		}
	}
	if image == "" || len(argv) == 0 {
		return "", nil, errors.New("no docker attribute or empty command")
	}
	return image, argv, nil
}

func unquoteWDL(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
		return strings.NewReplacer(`\\`, `\`, `\'`, `'`, `\"`, `"`).Replace(v)
	}
	return v
}

// shellWords splits a command text into lines of words, as a POSIX shell
// does for quoting: '...' literal, "..." with \ before " \ $ ` newline,
// \ outside quotes escaping the next character. Nothing is expanded.
func shellWords(s string) ([][]string, error) {
	var lines [][]string
	var line []string
	var w strings.Builder
	inWord := false
	endWord := func() {
		if inWord {
			line = append(line, w.String())
			w.Reset()
			inWord = false
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case ' ', '\t', '\r':
			endWord()
		case '\n':
			endWord()
			if len(line) > 0 {
				lines = append(lines, line)
			}
			line = nil
		case '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, errors.New("unterminated single quote")
			}
			w.WriteString(string(rs[i+1 : j]))
			i = j
		case '"':
			inWord = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`\n", rs[j+1]) {
					j++
					if rs[j] == '\n' {
						continue
					}
				}
				w.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, errors.New("unterminated double quote")
			}
			i = j
		case '\\':
			if i+1 < len(rs) {
				i++
				if rs[i] != '\n' {
					inWord = true
					w.WriteRune(rs[i])
				}
			}
		default:
			inWord = true
			w.WriteRune(r)
		}
	}
	endWord()
	if len(line) > 0 {
		lines = append(lines, line)
	}
	return lines, nil
}
