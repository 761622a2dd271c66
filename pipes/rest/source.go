package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/pipes/since"
	"github.com/ferrydata/ferry/templates/jinja"
)

// commonSchemaProps are the keys the REST source and transform share.
const commonSchemaProps = `
    "comment": {"description": "Free text, ignored."},
    "system": {"description": "The system:rest to call.", "type": "string", "minLength": 1},
    "operation": {"description": "The operation to use (the pipe's operations first, then the system's; default list).", "type": "string", "minLength": 1},
    "operations": {"description": "Operations of this pipe, with the keys of system:rest operations.", "type": "object", "additionalProperties": ` + operationSchema + `},
    "properties": {"description": "Values the operation's templates read as properties.*; a transform's are merged under the entity's own properties.", "type": "object"},
    "payload": {"description": "Overrides the operation's payload."},
    "payload_property": {"description": "Overrides the operation's payload_property.", "type": "string"},
    "id_expression": {"description": "Overrides the operation's id_expression.", "type": "string"},
    "updated_expression": {"description": "Overrides the operation's updated_expression.", "type": "string"},
    "rate_limiting_retries": {"description": "Overrides the system's rate_limiting_retries for this pipe.", "type": "integer", "minimum": 0},
    "rate_limiting_delay": {"description": "Overrides the system's rate_limiting_delay for this pipe.", "type": "number", "minimum": 0},
    "max_pages": {"description": "Overrides the operation's max_pages.", "type": "integer", "minimum": 1},
    "trace": {"description": "Log every request (method, redacted URL, status, size) at info level.", "type": "boolean"}`

const sourceSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "rest source",
  "type": "object",
  "required": ["system"],
  "properties": {
    "type": {"const": "rest"},` + commonSchemaProps + `,
    "since_property_name": {"description": "Overrides the operation's since_property_name.", "type": "string", "minLength": 1},
    "since_property_location": {"description": "Overrides the operation's since_property_location.", "enum": ["query", "header", "manual"]},
    "initial_since_value": {"description": "The since value of a run without a stored token; such a run reads only what changed since then and is not deletion-tracked (connector templates set it from history_since).", "type": ["string", "number"]},
    "supports_since": {"description": "Continue from the stored token (the largest _updated of the last run); without it every run is a full run.", "type": "boolean"},
    "is_since_comparable": {"description": "Sesam key, accepted; tokens are always compared (numbers as numbers).", "type": "boolean"},
    "is_chronological": {"description": "Records arrive in _updated order: the token is committed after every page.", "type": "boolean"},
    "if_source_empty": {"description": "With \"fail\", a full run that reads nothing fails instead of deletion-tracking every entity away.", "enum": ["accept", "fail"]}
  }
}`

// DefaultOperation is the operation a REST source or transform uses when
// its config names none.
const DefaultOperation = "list"

// parseCall reads the keys the source and transform share and builds the
// call of operation opName.
func parseCall(b *engine.Build, cfg map[string]any, opName string) (*call, map[string]*Operation, error) {
	sysID, _ := cfg["system"].(string)
	raw, err := b.System(sysID)
	if err != nil {
		return nil, nil, engine.Fieldf("/system", "%v", err)
	}
	sys, ok := raw.(*System)
	if !ok {
		return nil, nil, engine.Fieldf("/system", "system %q is not a system:rest", sysID)
	}
	pipeOps, err := parseOperations(sys.Templates, cfg["operations"], "/operations")
	if err != nil {
		return nil, nil, err
	}
	o := overrides{log: b.Logger}
	if o.log == nil {
		o.log = slog.Default()
	}
	if v, ok := cfg["properties"]; ok && v != nil {
		if o.properties, ok = v.(map[string]any); !ok {
			return nil, nil, engine.Fieldf("/properties", "expected an object")
		}
	}
	if v, ok := cfg["payload"]; ok && v != nil {
		o.payload, o.hasPayload = v, true
	}
	strp := func(key string) (*string, error) {
		v, ok := cfg[key]
		if !ok || v == nil {
			return nil, nil
		}
		s, ok := v.(string)
		if !ok {
			return nil, engine.Fieldf("/"+key, "expected a string")
		}
		return &s, nil
	}
	for _, f := range []struct {
		key string
		dst **string
	}{
		{"payload_property", &o.payloadProperty}, {"id_expression", &o.idExpr}, {"updated_expression", &o.updatedExpr},
		{"since_property_name", &o.sinceName}, {"since_property_location", &o.sinceLocation},
	} {
		if *f.dst, err = strp(f.key); err != nil {
			return nil, nil, err
		}
	}
	if o.sinceLocation != nil {
		switch *o.sinceLocation {
		case "query", "header", "manual":
		default:
			return nil, nil, engine.Fieldf("/since_property_location", "%q is not query, header or manual", *o.sinceLocation)
		}
	}
	if o.maxPages, err = positiveInt(cfg, "max_pages", ""); err != nil {
		return nil, nil, err
	}
	_, hasRetries := cfg["rate_limiting_retries"]
	_, hasDelay := cfg["rate_limiting_delay"]
	if hasRetries || hasDelay {
		hc := sys.Client.Config()
		rl := &httpclient.RateLimit{Retries: hc.RateLimitRetries, Delay: hc.RateLimitDelay}
		if n, ok := number(cfg["rate_limiting_retries"]); ok {
			rl.Retries = int(n)
		}
		if f, ok := number(cfg["rate_limiting_delay"]); ok {
			rl.Delay = time.Duration(f * float64(time.Second))
		}
		o.rateLimit = rl
	}
	o.trace, _ = cfg["trace"].(bool)
	op, ok := lookupOperation(opName, pipeOps, sys)
	if !ok {
		return nil, nil, engine.Fieldf("/operation", "operation %q is not defined by the pipe or system %q (known: %s)",
			opName, sys.ID, operationNames(pipeOps, sys))
	}
	c, err := newCall(sys, op, o)
	if err != nil {
		return nil, nil, err
	}
	if b.Pipe != "" {
		c.where = fmt.Sprintf("pipe %q %s", b.Pipe, c.where)
	}
	return c, pipeOps, nil
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

// Source is the REST source (SPEC d "REST source"). It is built once per
// pipe; every Open walks the operation's pages from the first.
//
// With supports_since the stored token is sent as since_property_name in
// the query or a header (nothing with since_property_location "manual",
// nor in the query when the url template reads `since`), and the new token
// is the largest _updated value (updated_expression) of the run: numbers
// compare numerically, other values as strings. It is handed to the engine
// only after the last page, unless is_chronological says items arrive in
// _updated order, so a failed run never skips items it did not deliver.
//
// A run without a stored token starts from initial_since_value when it is
// set (and not empty): it fetches only what changed since then, so the
// engine does not deletion-track it (see engine.PartialReader). This is
// how a connector instance connected with `--history since-connected` or
// a date skips older records: its collect template sets
// initial_since_value from the injected history_since variable.
type Source struct {
	call          *call
	supportsSince bool
	chronological bool
	initialSince  string
}

func newSource(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	c, _, err := parseCall(b, cfg, configuredOperation(cfg))
	if err != nil {
		return nil, err
	}
	s := &Source{call: c}
	s.supportsSince, _ = cfg["supports_since"].(bool)
	s.chronological, _ = cfg["is_chronological"].(bool)
	switch v := cfg["initial_since_value"].(type) {
	case string:
		s.initialSince = v
	case json.Number:
		s.initialSince = v.String()
	}
	return s, nil
}

// SupportsSince reports whether runs continue from a token.
func (s *Source) SupportsSince() bool { return s.supportsSince }

// Open starts a run: no request is sent before the first Next.
func (s *Source) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	since, partial := "", false
	if s.supportsSince {
		since = req.Since
		if since == "" {
			since = s.initialSince
			partial = since != ""
		}
	}
	base := jinja.Context{"properties": s.call.properties, "since": nil}
	if since != "" {
		base["since"] = since
	}
	p := newPager(s.call, base, since)
	fctx, cancel := context.WithCancel(ctx)
	r := &sourceReader{src: s, since: since, partial: partial, pages: make(chan fetched, 1), cancel: cancel, pager: p, fctx: fctx}
	return r, nil
}

// fetched is a page, or the error that ended paging (errStop at the end).
type fetched struct {
	pg  *page
	err error
}

// sourceReader fetches pages on its own goroutine, one page ahead of the
// engine: the next request and its JSON decoding overlap the processing
// and commit of the current page.
type sourceReader struct {
	src    *Source
	pages  chan fetched
	cancel context.CancelFunc
	since  string
	// partial: a run without a stored token that starts from
	// initial_since_value reads only what changed since then.
	partial bool
	// maxUpdated is the largest _updated seen.
	maxUpdated since.Max
	ended      bool // paging is over
	final      bool // the since batch was returned
	// pager and fctx start the fetching goroutine at the first Next or
	// NextRaw, which decides whether pages are decoded or kept as text.
	pager   *pager
	fctx    context.Context
	started bool
}

// start starts fetching pages, as text when raw.
func (r *sourceReader) start(raw bool) {
	if !r.started {
		r.started = true
		r.pager.raw = raw
		go r.fetch(r.fctx, r.pager)
	}
}

// RawOK reports whether the call's pages can be handed over as text
// (engine.RawReader; see raw.go).
func (r *sourceReader) RawOK() bool { return r.src.call.raw }

// NextRaw is Next with the entities as JSON text.
func (r *sourceReader) NextRaw(ctx context.Context) (engine.RawBatch, error) {
	r.start(true)
	pg, since, err := r.nextBatch(ctx)
	switch {
	case err != nil:
		return engine.RawBatch{}, err
	case pg == nil:
		return engine.RawBatch{Since: since}, nil
	}
	return engine.RawBatch{Values: pg.raw, Since: since, Locate: func(i int) string {
		return fmt.Sprintf("%s page %d: item %d", r.src.call.where, pg.index, i)
	}}, nil
}

// Next returns the entities of the next non-empty page, then (without
// is_chronological) an empty batch carrying the new since token.
func (r *sourceReader) Next(ctx context.Context) (engine.Batch, error) {
	r.start(false)
	pg, since, err := r.nextBatch(ctx)
	switch {
	case err != nil:
		return engine.Batch{}, err
	case pg == nil:
		return engine.Batch{Since: since}, nil
	}
	return engine.Batch{Entities: pg.entities, Since: since}, nil
}

// nextBatch returns the next page with entities and the token to store
// with it (with is_chronological); after the last, nil and (without
// is_chronological, once) the run's token; then engine.EOF.
func (r *sourceReader) nextBatch(ctx context.Context) (*page, string, error) {
	for !r.ended {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		var f fetched
		select {
		case f = <-r.pages:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
		if errors.Is(f.err, errStop) {
			r.ended = true
			break
		}
		if f.err != nil {
			return nil, "", f.err
		}
		pg := f.pg
		if len(pg.entities) == 0 && len(pg.raw) == 0 {
			continue
		}
		if r.src.supportsSince {
			for _, e := range pg.entities {
				if u, ok := e["_updated"].(string); ok && u != "" {
					r.maxUpdated.Offer(u, true)
				}
			}
			for _, u := range pg.updated {
				if u != "" {
					r.maxUpdated.Offer(u, true)
				}
			}
		}
		since := ""
		if r.src.chronological {
			since = r.token()
		}
		return pg, since, nil
	}
	if !r.final && !r.src.chronological {
		r.final = true
		if t := r.token(); t != "" {
			return nil, t, nil
		}
	}
	return nil, "", engine.EOF
}

// token is the since token to store: the largest _updated, never below
// the token the run started from.
func (r *sourceReader) token() string {
	top, ok := r.maxUpdated.Text()
	if !r.src.supportsSince || !ok {
		return ""
	}
	if r.since != "" && since.Compare(top, r.since, true) < 0 {
		return r.since
	}
	return top
}

// fetch runs the pager until it stops, fails or ctx ends.
func (r *sourceReader) fetch(ctx context.Context, p *pager) {
	for {
		pg, err := p.next(ctx)
		select {
		case r.pages <- fetched{pg, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// Partial reports whether the run started from initial_since_value
// rather than reading everything (engine.PartialReader): its first run
// then is not deletion-tracked.
func (r *sourceReader) Partial() bool { return r.partial }

// Close ends the run and stops the fetching goroutine.
func (r *sourceReader) Close() error {
	r.cancel()
	return nil
}

// configuredOperation is the config's operation, else DefaultOperation.
func configuredOperation(cfg map[string]any) string {
	if s, ok := cfg["operation"].(string); ok && s != "" {
		return s
	}
	return DefaultOperation
}
