package main

// Secrets in the configuration: CROMWELL_URL and SLURMRESTD_URL may carry
// credentials (user:password@, or a token in the query), and SLURM_JWT is
// one. They are kept in types whose every printed form (String, Format,
// MarshalJSON, LogValue) is the redacted one, so a message, a log line or a
// metric cannot show them by mistake; only the HTTP clients take the raw
// value, through reveal. As a second line, scrubber removes every known
// secret from the text of errors and log lines, whatever a scheduler echoes
// back (a proxy's page quoting the Authorization header, a Location).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
)

// secretURL is a URL that may carry credentials. Printed in any way, it is
// its redacted form; reveal returns the URL itself, for a request.
type secretURL string

// reveal returns the URL with its credentials: for an HTTP request only.
func (u secretURL) reveal() string { return string(u) }

// String returns the redacted URL.
func (u secretURL) String() string { return redactURL(string(u)) }

// Format prints the redacted URL whatever the verb (%s, %v, %q, %#v...).
func (u secretURL) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), u.String())
}

// MarshalJSON returns the redacted URL as a JSON string.
func (u secretURL) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

// LogValue returns the redacted URL.
func (u secretURL) LogValue() slog.Value { return slog.StringValue(u.String()) }

// secrets returns the parts of u that must never be shown: its password,
// "user:password" and its Basic authorization form, and each query value.
func (u secretURL) secrets() []string {
	p, err := url.Parse(string(u))
	if err != nil {
		// Unparsable: the whole text is the only safe thing to hide.
		return []string{string(u)}
	}
	var s []string
	if p.User != nil {
		if pw, ok := p.User.Password(); ok {
			s = append(s, pw, p.User.String(), p.User.Username()+":"+pw,
				base64.StdEncoding.EncodeToString([]byte(p.User.Username()+":"+pw)))
		}
	}
	for _, vs := range p.Query() {
		s = append(s, vs...)
	}
	if p.RawQuery != "" {
		s = append(s, p.RawQuery)
	}
	return s
}

// secret is a credential such as SLURM_JWT. Printed in any way, it is
// "[redacted]"; reveal returns it, for a request header.
type secret string

const redactedText = "[redacted]"

// reveal returns the secret itself: for a request header only.
func (s secret) reveal() string { return string(s) }

// String returns "[redacted]", or "" when the secret is unset.
func (s secret) String() string {
	if s == "" {
		return ""
	}
	return redactedText
}

// Format prints the String form whatever the verb.
func (s secret) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// MarshalJSON returns the String form as a JSON string.
func (s secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue returns the String form.
func (s secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// redactURL is u without the user, password and query it may carry, for
// messages and logs. A u that does not parse is replaced by a placeholder
// unless it has neither '@' nor '?'.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if strings.ContainsAny(u, "@?#") {
			return "(a URL that does not parse)"
		}
		return u
	}
	p.User = nil
	if p.RawQuery != "" || p.ForceQuery {
		p.RawQuery, p.ForceQuery = "redacted", false
	}
	p.Fragment, p.RawFragment = "", ""
	return p.String()
}

// urlQueryProblem returns why a scheduler's URL with a query or a fragment
// is refused, or "": pman appends the API's paths to the URL, which a query
// or a fragment would swallow. Credentials go in user:password@.
func urlQueryProblem(u *url.URL) string {
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(u.String(), "#") {
		return "has a query or a fragment: pman appends the API's paths to the URL (credentials go in user:password@)"
	}
	return ""
}

// configSecrets returns every secret the configuration holds, for a scrubber.
func configSecrets(c *config) []string {
	var s []string
	s = append(s, c.CromwellURL.secrets()...)
	s = append(s, c.Slurm.URL.secrets()...)
	if c.Slurm.JWT != "" {
		s = append(s, c.Slurm.JWT.reveal())
	}
	return s
}

// scrubber replaces every secret it knows in a text by "[redacted]"; each
// secret is also known in its URL-escaped forms. Secrets shorter than
// minSecret are left alone: replacing every "a" would garble the text and
// hide nothing worth hiding.
type scrubber struct {
	r *strings.Replacer // nil: nothing to scrub
}

const minSecret = 3

func newScrubber(secrets []string) *scrubber {
	var all []string
	for _, s := range secrets {
		for _, f := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
			if len(f) >= minSecret && !slices.Contains(all, f) {
				all = append(all, f)
			}
		}
	}
	if len(all) == 0 {
		return &scrubber{}
	}
	// Longest first: a secret that contains another is replaced whole.
	slices.SortFunc(all, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, s := range all {
		pairs = append(pairs, s, redactedText)
	}
	return &scrubber{r: strings.NewReplacer(pairs...)}
}

// scrub returns s with every secret replaced.
func (sc *scrubber) scrub(s string) string {
	if sc == nil || sc.r == nil {
		return s
	}
	return sc.r.Replace(s)
}

// scrubErr returns err with its text scrubbed, keeping an apiError's kind
// and code (the answer's status); err itself when it holds no secret.
func (sc *scrubber) scrubErr(err error) error {
	if err == nil || sc == nil || sc.r == nil {
		return err
	}
	msg := err.Error()
	clean := sc.scrub(msg)
	if clean == msg {
		return err
	}
	if ae, ok := err.(*apiError); ok {
		return &apiError{kind: ae.kind, code: ae.code, msg: clean}
	}
	return scrubbedError{clean, err}
}

// scrubbedError is an error whose text was scrubbed; it still unwraps to
// the original, for errors.Is and errors.As.
type scrubbedError struct {
	msg  string
	orig error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.orig }

// scrubbedSched passes every error of the scheduler it wraps through the
// scrubber, and the message of every job it answers.
type scrubbedSched struct {
	next scheduler
	sc   *scrubber
}

func (s *scrubbedSched) nameProblem(jid string) string { return s.next.nameProblem(jid) }

func (s *scrubbedSched) create(ctx context.Context, j *jobSpec) (*job, error) {
	jb, err := s.next.create(ctx, j)
	return s.scrubJob(jb), s.sc.scrubErr(err)
}

func (s *scrubbedSched) get(ctx context.Context, jid string) (*job, error) {
	jb, err := s.next.get(ctx, jid)
	return s.scrubJob(jb), s.sc.scrubErr(err)
}

func (s *scrubbedSched) remove(ctx context.Context, jid string) error {
	return s.sc.scrubErr(s.next.remove(ctx, jid))
}

func (s *scrubbedSched) ping(ctx context.Context) error {
	return s.sc.scrubErr(s.next.ping(ctx))
}

// scrubJob returns jb with its message scrubbed (a scheduler's error text
// may end up there); the job's own logs are the job's, and left as they are.
func (s *scrubbedSched) scrubJob(jb *job) *job {
	if jb != nil {
		jb.Message = s.sc.scrub(jb.Message)
	}
	return jb
}

// scrubHandler is a slog.Handler that scrubs the message and every
// attribute of each record before the next handler writes it.
type scrubHandler struct {
	next slog.Handler
	sc   *scrubber
}

func (h scrubHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h scrubHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.sc.scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.scrubAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h scrubHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = h.scrubAttr(a)
	}
	return scrubHandler{h.next.WithAttrs(clean), h.sc}
}

func (h scrubHandler) WithGroup(name string) slog.Handler {
	return scrubHandler{h.next.WithGroup(name), h.sc}
}

// scrubAttr returns a with its value, resolved, as scrubbed text (groups
// member by member); numbers, booleans, times and durations are kept.
func (h scrubHandler) scrubAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		g := v.Group()
		clean := make([]any, len(g))
		for i, m := range g {
			clean[i] = h.scrubAttr(m)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindString:
		return slog.String(a.Key, h.sc.scrub(v.String()))
	case slog.KindAny:
		// An error, a slice, a struct: as text, as the handler would print it.
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.sc.scrub(err.Error()))
		}
		// Through JSON and back, so that either handler prints it as
		// the value it is.
		var back any
		if b, err := json.Marshal(v.Any()); err == nil && json.Unmarshal([]byte(h.sc.scrub(string(b))), &back) == nil {
			return slog.Any(a.Key, back)
		}
		return slog.String(a.Key, h.sc.scrub(fmt.Sprint(v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
