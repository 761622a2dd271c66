package engine

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Redacted replaces secret values in redacted text.
const Redacted = "***"

// MinRedactLen is the shortest value a Redactor redacts: replacing every
// occurrence of a one- to three-character value would garble all output
// without protecting anything worth the name.
const MinRedactLen = 4

// minBase64Form is the shortest base64 fragment of a secret that is
// redacted (8 characters: two whole groups, 6 bytes of the secret).
const minBase64Form = 8

// Redactor scrubs known secret values from text. It is built once, from
// the values of the secrets a config resolved ($SECRET(name), see package
// secrets, which sets Config.Redactor; Compile hands it to Plan.Redactor),
// and applied where text leaves the process or is stored: the engine
// redacts a run's error before the run record and the pipe state are
// written and before the error is returned; the CLI routes its output
// through Writer; the HTTP API redacts its responses.
//
// Besides each value as it is, it redacts the forms a value takes on its
// way out: JSON-escaped, URL query- and path-escaped, and base64 (standard
// and URL alphabets, of the value and of its query-escaped form) at any of
// the three byte alignments, so the value is caught inside a base64 blob
// such as the Basic authorization of "user:secret" an upstream API echoed
// back. A base64 form is redacted
// only where it is at least 8 characters long (secrets of 6 bytes or
// more).
//
// The zero value is ready and redacts nothing; a nil *Redactor is valid
// and redacts nothing. It is safe for concurrent use.
type Redactor struct {
	mu     sync.RWMutex
	values []string
	forms  []string // every form of every value, longest first
	r      *strings.Replacer
}

// Add records values to redact. Values shorter than MinRedactLen are
// ignored; surrounding white space is not part of a value.
func (r *Redactor) Add(values ...string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for _, v := range values {
		v = strings.TrimSpace(v)
		if len(v) < MinRedactLen || slices.Contains(r.values, v) {
			continue
		}
		r.values = append(r.values, v)
		for _, f := range secretForms(v) {
			if !slices.Contains(r.forms, f) {
				r.forms = append(r.forms, f)
			}
		}
		changed = true
	}
	if !changed {
		return
	}
	// Longest first: at one position strings.Replacer takes the first
	// pattern in argument order, so a value containing another is
	// replaced whole.
	slices.SortStableFunc(r.forms, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(r.forms))
	for _, f := range r.forms {
		pairs = append(pairs, f, Redacted)
	}
	r.r = strings.NewReplacer(pairs...)
}

// secretForms lists the texts under which v may appear in output.
func secretForms(v string) []string {
	forms := []string{v}
	add := func(f string) {
		if len(f) >= MinRedactLen && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	if b, err := json.Marshal(v); err == nil {
		add(string(b[1 : len(b)-1]))
	}
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		s := strings.TrimSpace(sb.String())
		add(s[1 : len(s)-1])
	}
	add(url.QueryEscape(v))
	add(url.PathEscape(v))
	// base64 of a text that contains v: whatever precedes v, the groups of
	// three bytes that lie wholly inside v encode to the same characters.
	// v starts a group (skip 0), or one or two bytes of the group are
	// someone else's (skip 2 or 1).
	// OAuth2 clients query-escape a client secret before they encode
	// "id:secret" in base64, so the escaped text gets base64 forms too.
	texts := []string{v}
	if q := url.QueryEscape(v); q != v {
		texts = append(texts, q)
	}
	for _, text := range texts {
		for skip := range 3 {
			if skip >= len(text) {
				break
			}
			rest := text[skip:]
			whole := len(rest) / 3 * 3
			if whole/3*4 < minBase64Form {
				continue
			}
			add(base64.StdEncoding.EncodeToString([]byte(rest[:whole])))
			add(base64.URLEncoding.EncodeToString([]byte(rest[:whole])))
		}
	}
	return forms
}

// Empty reports whether the redactor knows no value.
func (r *Redactor) Empty() bool {
	if r == nil {
		return true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.values) == 0
}

func (r *Redactor) replacer() *strings.Replacer {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.r
}

// Redact returns s with every known value (in every form) replaced by
// "***".
func (r *Redactor) Redact(s string) string {
	if rep := r.replacer(); rep != nil {
		return rep.Replace(s)
	}
	return s
}

// RedactBytes is Redact for a byte slice; it returns b itself when there
// is nothing to redact.
func (r *Redactor) RedactBytes(b []byte) []byte {
	rep := r.replacer()
	if rep == nil {
		return b
	}
	s := string(b)
	if out := rep.Replace(s); out != s {
		return []byte(out)
	}
	return b
}

// Error returns err with a redacted message: err itself when its message
// holds no known value, else an error whose Error() is redacted and that
// unwraps to err (errors.Is and errors.As still see the cause).
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := r.Redact(msg); red != msg {
		return &redactedError{msg: red, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Writer returns a writer that redacts each Write before passing it on.
// A value split across two Writes is not caught; slog handlers, fmt and
// json.Encoder write a record, line or value at a time.
func (r *Redactor) Writer(w io.Writer) io.Writer { return &redactWriter{r: r, w: w} }

type redactWriter struct {
	r *Redactor
	w io.Writer
}

// Write redacts p and writes it; it reports len(p) on success.
func (rw *redactWriter) Write(p []byte) (int, error) {
	out := rw.r.RedactBytes(p)
	if len(out) == len(p) && (len(p) == 0 || &out[0] == &p[0]) {
		return rw.w.Write(p)
	}
	if _, err := rw.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
