package natsstore

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// Subject and stream names. Everything the store creates starts with its
// prefix (Options.Prefix, default "ferry"): streams are named
// PREFIX_META and PREFIX_D_<dataset token>, subjects PREFIX.m.<...> and
// PREFIX.d.<dataset token>.<_id token>.

// maxIDLen bounds an _id: its token goes into a subject, and a subject must
// fit into a protocol line (4 KiB by default) with the rest of it.
const maxIDLen = 2048

var b64 = base64.RawURLEncoding

// token turns any string into one subject token that is also valid in a
// stream name: the string itself when it only has [A-Za-z0-9_-] and is
// short, else "~" + base64url (which has no "~", so the two never collide).
func token(s string) string {
	if s != "" && len(s) <= 64 && plain(s) {
		return s
	}
	return "~" + b64.EncodeToString([]byte(s))
}

// untoken reverses token.
func untoken(t string) (string, error) {
	if rest, ok := strings.CutPrefix(t, "~"); ok {
		b, err := b64.DecodeString(rest)
		if err != nil {
			return "", fmt.Errorf("bad subject token %q", t)
		}
		return string(b), nil
	}
	return t, nil
}

func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// idToken is the subject token of an _id: always base64url, so that ids
// of any content map to one token and back.
func idToken(id string) string { return b64.EncodeToString([]byte(id)) }

func idFromToken(t string) (string, error) {
	b, err := b64.DecodeString(t)
	if err != nil {
		return "", fmt.Errorf("bad _id token %q", t)
	}
	return string(b), nil
}

// names holds the names derived from a prefix.
type names struct {
	prefix string // subject prefix, e.g. "ferry"
	stream string // stream name prefix, e.g. "FERRY"
}

func newNames(prefix string) names {
	return names{prefix: prefix, stream: strings.ToUpper(strings.ReplaceAll(prefix, "-", "_"))}
}

func (n names) metaStream() string { return n.stream + "_META" }
func (n names) metaSubjects() string {
	return n.prefix + ".m.>"
}

// Meta subjects: one per key, the newest message is the value.
func (n names) dsMeta(ds string) string        { return n.prefix + ".m.ds." + token(ds) }
func (n names) dsMetaAll() string              { return n.prefix + ".m.ds.>" }
func (n names) pipeState(p string) string      { return n.prefix + ".m.pipe." + token(p) }
func (n names) runs(p string) string           { return n.prefix + ".m.run." + token(p) }
func (n names) runsAll() string                { return n.prefix + ".m.run.>" }
func (n names) kv(ns, key string) string       { return n.prefix + ".m.kv." + token(ns) + "." + token(key) }
func (n names) kvAll(ns string) string         { return n.prefix + ".m.kv." + token(ns) + ".>" }
func (n names) lease(p string) string          { return n.prefix + ".m.lease." + token(p) }
func (n names) worker(id string) string        { return n.prefix + ".m.worker." + id }
func (n names) workersAll() string             { return n.prefix + ".m.worker.>" }
func (n names) txMarker(session string) string { return n.prefix + ".m.tx." + session }
func (n names) notify() string                 { return n.prefix + ".notify" }

func (n names) dsStream(ds string) string { return n.stream + "_D_" + token(ds) }
func (n names) dsSubjects(ds string) string {
	return n.prefix + ".d." + token(ds) + ".>"
}
func (n names) entity(ds, id string) string {
	return n.prefix + ".d." + token(ds) + "." + idToken(id)
}

// lastToken returns the part of a subject after its last dot.
func lastToken(subj string) string {
	if i := strings.LastIndexByte(subj, '.'); i >= 0 {
		return subj[i+1:]
	}
	return subj
}

// validPrefix checks Options.Prefix.
func validPrefix(p string) error {
	if p == "" || len(p) > 32 {
		return fmt.Errorf("prefix %q: want 1 to 32 characters", p)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("prefix %q: only lower-case letters, digits, '_' and '-'", p)
		}
	}
	return nil
}
