package secrets

import (
	"context"
	"fmt"
	"regexp"
	"strings"

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
// used, so callers can scrub output; it is also cfg.Redactor (created when
// nil, else added to), which Compile hands to the plan so that the engine
// redacts run errors and records. Call cfg.Check afterwards to turn the
// diagnostics into a *engine.ConfigError.
func Resolve(ctx context.Context, cfg *engine.Config, lookup Lookup) *Redactor {
	red := cfg.Redactor
	if red == nil {
		red = &Redactor{}
		cfg.Redactor = red
	}
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
const Redacted = engine.Redacted

// MinRedactLen is the shortest value a Redactor redacts.
const MinRedactLen = engine.MinRedactLen

// Redactor scrubs known secret values from text; see engine.Redactor.
type Redactor = engine.Redactor
