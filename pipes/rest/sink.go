package rest

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"

	"github.com/zeebo/xxh3"

	"github.com/ferrydata/ferry/engine"
)

const sinkSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "rest sink",
  "type": "object",
  "required": ["system"],
  "properties": {
    "type": {"const": "rest"},` + commonSchemaProps + `,
    "allowed_status_codes": {"description": "Statuses that succeed (default 200-299).", "type": "string"},
    "idempotency_key_header": {"description": "Send a per-entity idempotency key in this header, so a replay after a crash is harmless on systems that honour it.", "type": "string", "minLength": 1}
  }
}`

// Sink is the REST sink (SPEC e "rest"): one request per entity, built as
// the REST transform builds it (the entity's "operation", "properties"
// and "payload" win over the sink's; the sink's payload over the
// operation's; an entity payload is sent as it is, never rendered), with
// the requests of a batch sent concurrently up to the system's
// worker_threads. A deleted entity is sent only when its operation is a
// DELETE; otherwise it is skipped (a sink never turns a delete into a
// write). A status outside allowed_status_codes (default 200-299) fails
// the batch naming the entity, and the pipe's offset stays before it.
//
// The REST sink delivers at least once: after a crash between a request
// and the pipe's checkpoint the batch is sent again. With
// idempotency_key_header each request carries a key derived from the pipe,
// the entity's _id and its content, so systems that honour idempotency
// keys drop the replays. Use a share pipe (transform-share-rest) for
// inserts that must never be duplicated and updates that must not
// overwrite changes made in the system.
type Sink struct {
	t          *Transform
	pipe       string
	idemHeader string
}

func newSink(b *engine.Build, cfg map[string]any) (engine.Sink, error) {
	tcfg := maps.Clone(cfg)
	delete(tcfg, "idempotency_key_header")
	tcfg["type"] = "rest"
	tcfg["replace_entity"] = false
	t, err := newTransform(b, tcfg)
	if err != nil {
		return nil, err
	}
	s := &Sink{t: t.(*Transform), pipe: b.Pipe}
	s.idemHeader, _ = cfg["idempotency_key_header"].(string)
	s.t.idempotency = s.key
	return s, nil
}

// OutputDataset is "": the sink writes to a system.
func (s *Sink) OutputDataset() string { return "" }

// key derives an entity's idempotency header.
func (s *Sink) key(e engine.Entity) map[string]string {
	if s.idemHeader == "" {
		return nil
	}
	h := xxh3.New()
	h.WriteString(s.pipe)
	h.Write([]byte{0})
	if b, err := engine.AppendCanonical(nil, map[string]any(e)); err == nil {
		h.Write(b)
	}
	sum := h.Sum128().Bytes()
	return map[string]string{s.idemHeader: "ferry-" + hex.EncodeToString(sum[:])}
}

// Write sends one request per entity; the first failure (in batch order)
// fails the batch.
func (s *Sink) Write(ctx context.Context, batch []engine.Entity) error {
	send := make([]engine.Entity, 0, len(batch))
	for _, e := range batch {
		if isTrue(e, "_deleted") && !s.deletes(e) {
			continue
		}
		send = append(send, e)
	}
	if len(send) == 0 {
		return nil
	}
	if _, err := s.t.Transform(ctx, send); err != nil {
		return fmt.Errorf("rest sink: %w", err)
	}
	return nil
}

// deletes reports whether e's operation is a DELETE.
func (s *Sink) deletes(e engine.Entity) bool {
	name := s.t.defaultOp
	if n, ok := e["operation"].(string); ok && n != "" {
		name = n
	}
	c, ok := s.t.calls[name]
	return ok && c.op.Method == "DELETE"
}
