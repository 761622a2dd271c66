package pipes

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/since"
)

const embeddedSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "embedded source",
  "type": "object",
  "required": ["entities"],
  "properties": {
    "type": {"const": "embedded"},
    "comment": {},
    "entities": {"description": "The entities, each with a string _id.", "type": "array", "items": {"type": "object", "required": ["_id"], "properties": {"_id": {"type": "string", "minLength": 1}}}},
    "system": {"description": "Sesam key, accepted; no effect.", "type": "string"},
    "supports_since": {"description": "Entities carry _updated; a run reads only those above the stored token.", "type": "boolean"},
    "is_since_comparable": {"description": "Sesam key, accepted; tokens are always compared.", "type": "boolean"},
    "is_chronological": {"description": "Sesam key, accepted; no effect.", "type": "boolean"},
    "if_source_empty": {"description": "With \"fail\", a full run that reads nothing fails instead of deletion-tracking every entity away.", "enum": ["accept", "fail"]}
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
	var maxUpdated since.Max
	for _, ent := range e.Entities {
		cp := copyMap(ent)
		if u, ok := ent["_updated"]; ok && e.Since {
			text, numeric := tokenText(u)
			if req.Since != "" && since.Compare(text, req.Since, numeric) <= 0 {
				continue
			}
			maxUpdated.Offer(text, numeric)
		}
		out = append(out, cp)
	}
	maxSince, _ := maxUpdated.Text()
	return &sliceReader{ents: out, size: req.BatchSize, since: maxSince}, nil
}

// tokenText renders an _updated value as a continuation token, and says
// whether it compares as a number (a JSON number) or as a string.
func tokenText(v any) (text string, numeric bool) {
	switch x := v.(type) {
	case string:
		return x, false
	case json.Number:
		return string(x), true
	}
	return fmt.Sprint(v), false
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
