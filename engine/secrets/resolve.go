package secrets

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/ferrydata/ferry/engine"
)

var (
	secretRef = regexp.MustCompile(`\$SECRET\(([^()]*)\)`)
	wholeRef  = regexp.MustCompile(`^\$SECRET\([^()]*\)$`)
)

// Lookup finds the value of secret name for a system (see Store.Get).
type Lookup func(ctx context.Context, system, name string) (string, bool, error)

// Resolve replaces every $SECRET(name) in cfg's system configs with the
// secret's value and reports, as error diagnostics appended to
// cfg.Diagnostics:
//
//   - $SECRET anywhere in a pipe ("only allowed in system configs", with
//     the pipe's file and pointer), except a whole-value "$SECRET(name)"
//     as the webhook_secret of an http_endpoint source: that one stays in
//     the config and the receiver resolves it per request from the same
//     store (system secret of the pipe's system, else global), so its
//     value never enters the config either;
//   - an unknown secret (naming the system and the secret);
//   - a secret that cannot be read (wrong key, no key).
//
// No message contains a value. The returned Redactor knows every value
// used, so callers can scrub output. Call cfg.Check afterwards to turn the
// diagnostics into a *engine.ConfigError.
func Resolve(ctx context.Context, cfg *engine.Config, lookup Lookup) *Redactor {
	red := &Redactor{}
	for _, p := range cfg.Pipes {
		exempt := ""
		if src, _ := p.Raw["source"].(map[string]any); src != nil && src["type"] == "http_endpoint" {
			if ws, _ := src["webhook_secret"].(string); wholeRef.MatchString(ws) {
				exempt = p.Pointer + "/source/webhook_secret"
			}
		}
		walk(p.Raw, p.Pointer, func(s, ptr string) string {
			if ptr == exempt {
				return s
			}
			for _, m := range secretRef.FindAllStringSubmatch(s, -1) {
				cfg.Diagnostics = append(cfg.Diagnostics, engine.Diagnostic{Severity: engine.SevError, File: p.File, Pointer: ptr,
					Message: fmt.Sprintf("pipe %q: $SECRET(%s) is only allowed in system configs", p.ID, m[1])})
			}
			return s
		})
	}
	for _, sys := range cfg.Systems {
		sys.Raw = walk(sys.Raw, sys.Pointer, func(s, ptr string) string {
			return secretRef.ReplaceAllStringFunc(s, func(ref string) string {
				name := ref[len("$SECRET(") : len(ref)-1]
				v, ok, err := lookup(ctx, sys.ID, name)
				switch {
				case err != nil:
					cfg.Diagnostics = append(cfg.Diagnostics, engine.Diagnostic{Severity: engine.SevError, File: sys.File, Pointer: ptr,
						Message: fmt.Sprintf("system %q: secret %q: %v", sys.ID, name, err)})
					return ref
				case !ok:
					cfg.Diagnostics = append(cfg.Diagnostics, engine.Diagnostic{Severity: engine.SevError, File: sys.File, Pointer: ptr,
						Message: fmt.Sprintf("system %q: unknown secret %q (set it with: ferry secret set %s --system %s)", sys.ID, name, name, sys.ID)})
					return ref
				}
				red.Add(v)
				return v
			})
		}).(map[string]any)
	}
	return red
}

// HasRefs reports whether v (a decoded config value) contains $SECRET.
func HasRefs(v any) bool {
	found := false
	walk(v, "", func(s, _ string) string {
		if secretRef.MatchString(s) {
			found = true
		}
		return s
	})
	return found
}

// walk returns a copy of v with fn applied to every string that contains
// "$SECRET(", passing the string's JSON pointer. Unchanged subtrees are
// shared.
func walk(v any, ptr string, fn func(s, ptr string) string) any {
	switch x := v.(type) {
	case string:
		if !strings.Contains(x, "$SECRET(") {
			return x
		}
		return fn(x, ptr)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = walk(e, ptr+"/"+escape(k), fn)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = walk(e, fmt.Sprintf("%s/%d", ptr, i), fn)
		}
		return out
	default:
		return v
	}
}

func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// Redacted replaces secret values in redacted text.
const Redacted = "***"

// Redactor scrubs known secret values from text. The zero value is ready
// and redacts nothing; it is safe for concurrent use.
type Redactor struct {
	mu     sync.RWMutex
	values []string // longest first
}

// MinRedactLen is the shortest value a Redactor redacts: replacing every
// occurrence of a one- to three-character value would garble all output
// without protecting anything worth the name.
const MinRedactLen = 4

// Add records a value to redact. Values shorter than MinRedactLen are
// ignored.
func (r *Redactor) Add(v string) {
	if r == nil || len(v) < MinRedactLen {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, have := range r.values {
		if have == v {
			return
		}
	}
	r.values = append(r.values, v)
	sort.Slice(r.values, func(i, j int) bool { return len(r.values[i]) > len(r.values[j]) })
}

// Redact returns s with every known value replaced by "***".
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.values {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	return s
}

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
	rw.r.mu.RLock()
	hit := false
	for _, v := range rw.r.values {
		if bytes.Contains(p, []byte(v)) {
			hit = true
			break
		}
	}
	rw.r.mu.RUnlock()
	if !hit {
		return rw.w.Write(p)
	}
	if _, err := io.WriteString(rw.w, rw.r.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
