package pipes

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/ferrydata/ferry/engine"
)

const embeddedSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "embedded source",
  "type": "object",
  "required": ["entities"],
  "properties": {
    "type": {"const": "embedded"},
    "comment": {},
    "entities": {"type": "array", "items": {"type": "object", "required": ["_id"], "properties": {"_id": {"type": "string", "minLength": 1}}}},
    "system": {"type": "string"},
    "supports_since": {"type": "boolean"},
    "is_since_comparable": {"type": "boolean"},
    "is_chronological": {"type": "boolean"},
    "if_source_empty": {"enum": ["accept", "fail"]}
  }
}`

// Embedded yields a static list of entities. With supports_since, entities
// carry _updated and a run only yields those with _updated above the token.
type Embedded struct {
	Entities []engine.Entity
	Since    bool
}

func newEmbedded(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	list, _ := cfg["entities"].([]any)
	e := &Embedded{}
	e.Since, _ = cfg["supports_since"].(bool)
	for i, v := range list {
		ent, err := engine.AsEntity(v)
		if err != nil {
			return nil, engine.Fieldf(fmt.Sprintf("/entities/%d", i), "%v", err)
		}
		if e.Since {
			if _, ok := ent["_updated"]; !ok {
				return nil, engine.Fieldf(fmt.Sprintf("/entities/%d", i), "supports_since needs _updated on every entity")
			}
		}
		e.Entities = append(e.Entities, ent)
	}
	return e, nil
}

// SupportsSince reports whether runs continue from a token.
func (e *Embedded) SupportsSince() bool { return e.Since }

// Open starts a run.
func (e *Embedded) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	var out []engine.Entity
	since := req.Since
	maxSince := ""
	var maxVal any
	for _, ent := range e.Entities {
		cp := copyMap(ent)
		if e.Since {
			u := ent["_updated"]
			if since != "" && compareToken(u, since) <= 0 {
				continue
			}
			if maxVal == nil || compareToken(u, tokenText(maxVal)) > 0 {
				maxVal = u
				maxSince = tokenText(u)
			}
		}
		out = append(out, cp)
	}
	return &sliceReader{ents: out, size: req.BatchSize, since: maxSince}, nil
}

// tokenText renders an _updated value as a continuation token.
func tokenText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return string(x)
	}
	return fmt.Sprint(v)
}

// compareToken compares an _updated value with a stored token: numerically
// when both are numbers, else as strings.
func compareToken(v any, token string) int {
	if n, ok := v.(json.Number); ok {
		a, ok1 := new(big.Float).SetString(string(n))
		b, ok2 := new(big.Float).SetString(token)
		if ok1 && ok2 {
			return a.Cmp(b)
		}
	}
	s := tokenText(v)
	switch {
	case s < token:
		return -1
	case s > token:
		return 1
	}
	return 0
}

// copyMap makes a shallow copy so transforms cannot change the config.
func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sliceReader serves entities held in memory in batches; the token is
// reported with the last batch.
type sliceReader struct {
	ents  []engine.Entity
	size  int
	since string
}

func (r *sliceReader) Next(ctx context.Context) (engine.Batch, error) {
	if len(r.ents) == 0 {
		return engine.Batch{}, engine.EOF
	}
	n := min(max(r.size, 1), len(r.ents))
	b := engine.Batch{Entities: r.ents[:n]}
	r.ents = r.ents[n:]
	if len(r.ents) == 0 {
		b.Since = r.since
	}
	return b, nil
}

func (r *sliceReader) Close() error { return nil }
