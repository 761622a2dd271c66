package rest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"sync"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/templates/jinja"
)

const transformSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "rest transform",
  "type": "object",
  "required": ["system"],
  "properties": {
    "type": {"const": "rest"},` + commonSchemaProps + `,
    "replace_entity": {"description": "true: emit the response records instead of the entity; false (default): keep the entity and store the response under response_property.", "type": "boolean"},
    "response_property": {"description": "Where the response goes (default response).", "type": "string", "minLength": 1},
    "response_status_property": {"description": "Store the response status under this property.", "type": "string", "minLength": 1},
    "response_headers_property": {"description": "Store the response headers under this property.", "type": "string", "minLength": 1},
    "allowed_status_codes": {"description": "Statuses that succeed (default 200-299); others fail the batch.", "type": "string"},
    "ignored_status_codes": {"description": "Statuses that drop the entity.", "type": "string"},
    "side_effects": {"description": "The requests change the system (ferry share plan refuses such pipes).", "type": "boolean"},
    "trigger_on": {"description": "Only entities whose property key matches value (a glob) are sent; others pass unchanged.", 
      "type": "object",
      "properties": {"key": {"description": "The entity property tested.", "type": "string", "minLength": 1}, "value": {"description": "The value (a glob for strings) it must match.", "type": ["string", "number", "boolean"]}}
    }
  }
}`

// Transform is the REST transform (SPEC f "rest"): one request per entity,
// built from the entity's operation (entity "operation" key, else the
// transform's), properties (the transform's, overridden per key by the
// entity's "properties") and payload (entity "payload" > transform payload
// > operation payload; an entity payload is data and is not rendered).
// Templates see `entity`, `source_entity` and `properties`.
//
// With replace_entity false the entity is kept and the response is stored
// under response_property: the body as it is (JSON, or the text of a
// non-JSON body) or, when the operation has payload_property or a
// next_page_link, the list of items of every page. With replace_entity
// true the response items replace the entity (every page is followed), each
// with _id from id_expression, else its own _id, else (a lone item) the
// input entity's _id.
//
// Statuses in ignored_status_codes drop the entity silently; statuses
// outside allowed_status_codes (default 200-299) fail the batch with an
// error naming the entity's _id. Entities whose trigger_on key does not
// match the glob pass through unchanged. Requests of a batch run
// concurrently, up to the system's worker_threads, and outputs keep the
// input order. side_effects (default: true unless the operation is a GET
// or HEAD) tells `ferry share plan` whether the transform may change the
// system: a plan refuses pipes with such transforms rather than skip
// their requests.
type Transform struct {
	calls       map[string]*call // by operation name
	defaultOp   string
	replace     bool
	respProp    string
	statusProp  string
	headersProp string
	allowed     httpclient.StatusSet
	ignored     httpclient.StatusSet
	triggerKey  string
	trigger     *regexp.Regexp // nil: every entity
	workers     int
	// idempotency, when set, gives headers sent with an entity's request
	// (the REST sink's idempotency key).
	idempotency func(engine.Entity) map[string]string
	sideEffects bool
}

// SideEffects reports whether the transform may change the system: its
// side_effects setting, else whether its operation is not a GET or HEAD
// (engine.SideEffecter; `ferry share plan` refuses such pipes).
func (t *Transform) SideEffects() bool { return t.sideEffects }

func newTransform(b *engine.Build, cfg map[string]any) (engine.Transform, error) {
	opName := configuredOperation(cfg)
	first, pipeOps, err := parseCall(b, cfg, opName)
	named := cfg["operation"] != nil
	if err != nil {
		var fe *engine.FieldError
		if named || !errors.As(err, &fe) || fe.Pointer != "/operation" {
			return nil, err
		}
		first = nil // no default operation: entities must name theirs
	}
	t := &Transform{calls: map[string]*call{}, defaultOp: opName, respProp: "response", triggerKey: "_trigger"}
	var sys *System
	if first != nil {
		t.calls[opName] = first
		sys = first.sys
	} else {
		raw, _ := b.System(cfg["system"].(string))
		sys = raw.(*System)
	}
	// Entities may name any operation of the pipe or the system.
	names := map[string]bool{}
	for n := range pipeOps {
		names[n] = true
	}
	for n := range sys.Operations {
		names[n] = true
	}
	for n := range names {
		if _, done := t.calls[n]; done {
			continue
		}
		c, _, err := parseCall(b, cfg, n)
		if err != nil {
			return nil, err
		}
		t.calls[n] = c
	}
	t.replace, _ = cfg["replace_entity"].(bool)
	str := func(key string, dst *string) {
		if s, ok := cfg[key].(string); ok && s != "" {
			*dst = s
		}
	}
	str("response_property", &t.respProp)
	str("response_status_property", &t.statusProp)
	str("response_headers_property", &t.headersProp)
	codes := "200-299"
	str("allowed_status_codes", &codes)
	if t.allowed, err = httpclient.ParseStatusSet(codes); err != nil {
		return nil, engine.Fieldf("/allowed_status_codes", "%v", err)
	}
	if s, ok := cfg["ignored_status_codes"].(string); ok && s != "" {
		if t.ignored, err = httpclient.ParseStatusSet(s); err != nil {
			return nil, engine.Fieldf("/ignored_status_codes", "%v", err)
		}
	}
	if tr, ok := cfg["trigger_on"].(map[string]any); ok {
		str := func(k string) string {
			if v, ok := tr[k]; ok && v != nil {
				return scalarText(v)
			}
			return ""
		}
		if k := str("key"); k != "" {
			t.triggerKey = k
		}
		pattern := str("value")
		if pattern == "" {
			pattern = "*"
		}
		if t.trigger, err = globRegexp(pattern); err != nil {
			return nil, engine.Fieldf("/trigger_on/value", "%v", err)
		}
	}
	t.workers = max(sys.Client.Config().MaxConcurrency, 1)
	if v, ok := cfg["side_effects"].(bool); ok {
		t.sideEffects = v
	} else if c := t.calls[t.defaultOp]; c != nil {
		t.sideEffects = c.op.Method != "GET" && c.op.Method != "HEAD"
	}
	return t, nil
}

// Transform sends one request per entity of the batch.
func (t *Transform) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	results := make([][]engine.Entity, len(in))
	errs := make([]error, len(in))
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, t.workers)
	var wg sync.WaitGroup
	for i, e := range in {
		if !t.triggered(e) {
			results[i] = []engine.Entity{e}
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = t.one(ctx, e)
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, err
	}
	// The first failure in input order that is not a request this batch
	// cancelled because another entity failed.
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, &engine.EntityError{ID: engine.ID(in[i]), Err: err}
		}
	}
	for i, err := range errs {
		if err != nil {
			return nil, &engine.EntityError{ID: engine.ID(in[i]), Err: err}
		}
	}
	var out []engine.Entity
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil
}

// triggered reports whether e's trigger_on key matches (always true
// without trigger_on).
func (t *Transform) triggered(e engine.Entity) bool {
	if t.trigger == nil {
		return true
	}
	v, ok := lookupProperty(e, t.triggerKey)
	if !ok || v == nil {
		return false
	}
	return t.trigger.MatchString(scalarText(v))
}

// one runs the request(s) of one entity.
func (t *Transform) one(ctx context.Context, e engine.Entity) ([]engine.Entity, error) {
	opName := t.defaultOp
	if s, ok := e["operation"].(string); ok && s != "" {
		opName = s
	}
	c, ok := t.calls[opName]
	if !ok {
		return nil, fmt.Errorf("operation %q is not defined", opName)
	}
	props := c.properties
	if ep, ok := e["properties"].(map[string]any); ok {
		props = maps.Clone(props)
		if props == nil {
			props = map[string]any{}
		}
		maps.Copy(props, ep)
	}
	base := jinja.Context{"entity": e, "source_entity": e, "properties": props}
	p := newPager(c, base, "")
	if pl, ok := e["payload"]; ok {
		p.rawPayload, p.hasRawPayload = pl, true
	}
	p.allowed = func(s int) bool { return t.allowed.Contains(s) || t.ignored.Contains(s) }
	if t.idempotency != nil {
		p.headers = t.idempotency(e)
	}
	paged := c.nextT != nil || c.payloadProperty != ""
	p.entities = t.replace
	p.single = !t.replace && !paged
	p.defaultID = engine.ID(e)

	var out []engine.Entity
	var items []any
	var firstPage *page
	for {
		pg, err := p.next(ctx)
		if errors.Is(err, errStop) {
			break
		}
		if pg != nil && t.ignored.Contains(pg.resp.Status) && !t.allowed.Contains(pg.resp.Status) {
			return nil, nil // ignored status: drop the entity
		}
		if err != nil {
			return nil, err
		}
		if firstPage == nil {
			firstPage = pg
		}
		out = append(out, pg.entities...)
		items = append(items, pg.itemList...)
	}
	if t.replace {
		return out, nil
	}
	res := maps.Clone(e)
	switch {
	case firstPage == nil:
		res[t.respProp] = nil
	case paged && firstPage.resp.Status/100 == 2:
		if items == nil {
			items = []any{}
		}
		res[t.respProp] = items
	case firstPage.isJSON:
		res[t.respProp] = firstPage.body
	default:
		res[t.respProp] = string(firstPage.resp.Body)
	}
	if firstPage != nil {
		if t.statusProp != "" {
			res[t.statusProp] = firstPage.resp.Status
		}
		if t.headersProp != "" {
			h := make(map[string]any, len(firstPage.resp.Header))
			for k, vs := range firstPage.resp.Header {
				h[k] = strings.Join(vs, ", ")
			}
			res[t.headersProp] = h
		}
	}
	return []engine.Entity{res}, nil
}

// globRegexp compiles a Python fnmatch pattern (*, ?, [seq], [!seq]).
func globRegexp(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^(?s:")
	rs := []rune(pattern)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := i + 1
			if j < len(rs) && rs[j] == '!' {
				j++
			}
			if j < len(rs) && rs[j] == ']' {
				j++
			}
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j >= len(rs) {
				b.WriteString(`\[`)
				continue
			}
			class := strings.ReplaceAll(string(rs[i+1:j]), `\`, `\\`)
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			} else if strings.HasPrefix(class, "^") {
				class = `\` + class
			}
			b.WriteString("[" + class + "]")
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(")$")
	return regexp.Compile(b.String())
}
