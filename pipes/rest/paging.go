package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/templates/jinja"
)

// call is one use of an operation by a pipe component: the operation plus
// the component's overrides (SPEC d step 1, f). It is immutable once built
// and shared by every run.
type call struct {
	sys *System
	op  *Operation
	// where names the component for errors: `system "s" operation "o"`.
	where           string
	properties      map[string]any
	payload         any // pipe-level payload; wins over op.Payload when set
	hasPayload      bool
	payloadProperty string
	idExpr          string
	updatedExpr     string
	sinceName       string
	sinceLocation   string
	rateLimit       *httpclient.RateLimit
	maxPages        int
	trace           bool
	log             *slog.Logger

	// Compiled templates (nil when absent) and the top-level names the
	// per-item templates read.
	urlT, idT, updT, errT, nextT *jinja.Template
	idNames, updNames            []string
	idFast, updFast, nextFast    fastPath
	urlUsesSince                 bool
	// raw: the call's listings can take the raw path (rawEligible).
	raw  bool
	stop map[string]bool
}

// overrides are the pipe-level keys that replace an operation's.
type overrides struct {
	properties                           map[string]any
	payload                              any
	hasPayload                           bool
	payloadProperty, idExpr, updatedExpr *string
	sinceName, sinceLocation             *string
	rateLimit                            *httpclient.RateLimit
	maxPages                             int
	trace                                bool
	log                                  *slog.Logger
}

// newCall compiles an operation use. Templates were compiled into the
// system's set by the system constructor; pipe-level strings are compiled
// here.
func newCall(sys *System, op *Operation, o overrides) (*call, error) {
	c := &call{
		sys: sys, op: op,
		where:           fmt.Sprintf("system %q operation %q", sys.ID, op.Name),
		properties:      o.properties,
		payload:         op.Payload,
		hasPayload:      op.Payload != nil,
		payloadProperty: op.PayloadProperty,
		idExpr:          op.IDExpression,
		updatedExpr:     op.UpdatedExpression,
		sinceName:       op.SinceName,
		sinceLocation:   op.SinceLocation,
		rateLimit:       o.rateLimit,
		maxPages:        op.MaxPages,
		trace:           o.trace,
		log:             o.log,
		stop:            map[string]bool{},
	}
	if c.properties == nil {
		c.properties = map[string]any{}
	}
	if c.log == nil {
		c.log = sys.Logger
	}
	if o.hasPayload {
		c.payload, c.hasPayload = o.payload, true
	}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.payloadProperty, o.payloadProperty)
	set(&c.idExpr, o.idExpr)
	set(&c.updatedExpr, o.updatedExpr)
	set(&c.sinceName, o.sinceName)
	set(&c.sinceLocation, o.sinceLocation)
	if o.maxPages > 0 {
		c.maxPages = o.maxPages
	}
	if c.maxPages <= 0 {
		c.maxPages = DefaultMaxPages
	}
	strategies := op.Termination
	if len(strategies) == 0 {
		strategies = defaultTermination
	}
	for _, s := range strategies {
		c.stop[s] = true
	}
	ts := c.sys.Templates
	var err error
	compile := func(ptr, src string) *jinja.Template {
		if err != nil || src == "" {
			return nil
		}
		t, e := ts.Compile(src)
		if e != nil {
			err = engine.Fieldf(ptr, "%v", e)
		}
		return t
	}
	c.urlT = compile("/url", op.URL)
	c.idT = compile("/id_expression", c.idExpr)
	c.updT = compile("/updated_expression", c.updatedExpr)
	c.errT = compile("/error_expression", op.ErrorExpression)
	c.nextT = compile("/next_page_link", op.NextPageLink)
	if err == nil && o.hasPayload {
		if e := compileTree(ts, o.payload); e != nil {
			err = engine.Fieldf("/payload", "%v", e)
		}
	}
	if err != nil {
		return nil, err
	}
	if c.urlT == nil {
		c.urlT, _ = ts.Compile("")
	}
	c.urlUsesSince = c.urlT.Uses("since")
	c.nextFast = pathOf(op.NextPageLink)
	if c.idT != nil {
		c.idNames = c.idT.Names()
		c.idFast = pathOf(c.idExpr)
	}
	if c.updT != nil {
		c.updNames = c.updT.Names()
		c.updFast = pathOf(c.updatedExpr)
	}
	c.raw = rawEligible(c)
	return c, nil
}

// request is one rendered request and what templates may see of it.
type request struct {
	link        string            // absolute URL before params were added
	params      url.Values        // sent params (those not already in link's query)
	paramVals   map[string]any    // rendered params as template values
	headers     map[string]string // rendered operation headers (sent)
	allHeaders  map[string]any    // system + operation headers, for templates
	body        []byte
	contentType string
}

func (r *request) same(o *request) bool {
	return r.link == o.link && r.contentType == o.contentType && bytes.Equal(r.body, o.body) &&
		maps.Equal(r.headers, o.headers) && maps.EqualFunc(r.params, o.params, slices.Equal)
}

// page is one response, parsed.
type page struct {
	index   int
	req     *request
	resp    *httpclient.Response
	body    any // parsed JSON body (nil when empty or not JSON)
	isJSON  bool
	headers map[string]any // response headers for templates
	// entities are the page's items with _id (and _updated) set; nil when
	// the pager does not build entities.
	entities []engine.Entity
	// items and itemList are the page's items (unless the pager is single).
	items    int
	itemList []any
	// raw and updated are, on the raw path (pager.raw), the text of the
	// page's entities and their _updated strings; entities and itemList
	// are then nil.
	raw     [][]byte
	updated []string
}

// pager walks the pages of one operation call (SPEC d steps 2-8).
type pager struct {
	c    *call
	base jinja.Context // properties, since, entity, ... (never modified)
	// since is the value sent for since_property_name ("" = none).
	since string
	// allowed decides which statuses are accepted (nil: 2xx only).
	allowed func(status int) bool
	// entities: build entities from items (source, replace_entity).
	entities bool
	// single: fetch one page and keep its body as it is, JSON or not (REST
	// transform without replace_entity, payload_property or paging).
	single bool
	// defaultID is the _id of a lone item without _id when there is no
	// id_expression (REST transform: the input entity's _id).
	defaultID string
	// rawPayload, when hasRawPayload, is sent instead of the rendered
	// payload (the REST transform's entity payload).
	rawPayload    any
	hasRawPayload bool
	// headers are added to every request (a share's idempotency key);
	// noReplay forbids replays of it (see httpclient.Request.NoReplay).
	headers  map[string]string
	noReplay bool

	// raw: hand a listing's items over as text (see raw.go); only set
	// for calls that are rawEligible.
	raw bool

	dec     *engine.Decoder
	n       int // pages fetched
	prev    *page
	pending *request
	done    bool
}

func newPager(c *call, base jinja.Context, since string) *pager {
	p := &pager{c: c, base: base, since: since, entities: true, dec: engine.NewDecoder()}
	if c.op.PageSize > 0 {
		p.base = maps.Clone(base)
		p.base["page_size"] = c.op.PageSize
	}
	return p
}

// errStop is returned by next when there are no more pages.
var errStop = errors.New("no more pages")

// vars returns the template context of page index i.
func (p *pager) vars(i int) jinja.Context {
	v := make(jinja.Context, len(p.base)+12)
	maps.Copy(v, p.base)
	v["page"] = i
	v["is_first_page"] = i == 0
	if p.prev != nil {
		v["previous_body"] = p.prev.body
		v["previous_params"] = p.prev.req.paramVals
		v["previous_request_headers"] = p.prev.req.allHeaders
		v["previous_headers"] = p.prev.headers
	}
	return v
}

func (p *pager) fail(i int, format string, args ...any) error {
	return fmt.Errorf("%s page %d: %s", p.c.where, i, fmt.Sprintf(format, args...))
}

func (p *pager) wrap(i int, what string, err error) error {
	return fmt.Errorf("%s page %d: %s: %w", p.c.where, i, what, err)
}

// build renders the request of page i; link is the next-page link ("" for
// the first page, which renders the operation's url).
func (p *pager) build(i int, link string) (*request, error) {
	c := p.c
	v := p.vars(i)
	var err error
	if i == 0 {
		if link, err = c.urlT.Render(v); err != nil {
			return nil, p.wrap(i, "url", err)
		}
	}
	abs, err := c.sys.Client.URL(httpclient.Request{URL: link})
	if err != nil {
		return nil, p.wrap(i, "url", err)
	}
	r := &request{link: abs, headers: map[string]string{}, allHeaders: make(map[string]any, len(c.sys.Headers)+4)}
	v["url"] = abs

	// Headers before params: the corpus computes params from the request
	// headers (`$skip` from headers['X-Sesam-Page']).
	if c.op.Headers != nil {
		out, _, err := c.sys.Templates.RenderTree(v, c.op.Headers)
		if err != nil {
			return nil, p.wrap(i, "headers", err)
		}
		for k, hv := range out.(map[string]any) {
			if hv == nil {
				continue
			}
			r.headers[k] = scalarText(hv)
		}
	}
	if p.since != "" && c.sinceLocation == "header" {
		r.headers[c.sinceName] = p.since
	}
	for k, hv := range p.headers {
		r.headers[k] = hv
	}
	for k, hv := range c.sys.Headers {
		r.allHeaders[k] = hv
	}
	for k, hv := range r.headers {
		r.allHeaders[k] = hv
	}
	v["headers"] = r.allHeaders
	v["request_headers"] = r.allHeaders

	r.paramVals = map[string]any{}
	if c.op.Params != nil {
		out, _, err := c.sys.Templates.RenderTree(v, c.op.Params)
		if err != nil {
			return nil, p.wrap(i, "params", err)
		}
		r.paramVals = out.(map[string]any)
	}
	if p.since != "" && c.sinceLocation == "query" && !c.urlUsesSince {
		if _, set := r.paramVals[c.sinceName]; !set {
			r.paramVals[c.sinceName] = p.since
		}
	}
	var inLink url.Values
	if q := strings.IndexByte(abs, '?'); q >= 0 {
		inLink, _ = url.ParseQuery(strings.SplitN(abs[q+1:], "#", 2)[0])
	}
	r.params = url.Values{}
	for k, pv := range r.paramVals {
		if inLink.Has(k) {
			continue // the link already carries it (next links repeat the query)
		}
		switch x := pv.(type) {
		case nil:
		case []any:
			for _, e := range x {
				if e != nil {
					r.params.Add(k, scalarText(e))
				}
			}
		default:
			r.params.Set(k, scalarText(x))
		}
	}
	v["request_params"] = r.paramVals

	if p.hasRawPayload {
		// An entity's own payload is data: it is sent as it is, never
		// rendered (its strings may contain "{{").
		if p.rawPayload != nil {
			if r.body, r.contentType, err = encodePayload(p.rawPayload, c.op.PayloadType); err != nil {
				return nil, p.wrap(i, "payload", err)
			}
		}
	} else if c.hasPayload {
		out, skip, err := c.sys.Templates.RenderTree(v, c.payload)
		if err != nil {
			return nil, p.wrap(i, "payload", err)
		}
		if !skip && out != nil {
			if r.body, r.contentType, err = encodePayload(out, c.op.PayloadType); err != nil {
				return nil, p.wrap(i, "payload", err)
			}
		}
	}
	return r, nil
}

// encodePayload serialises a rendered payload as JSON or as a form.
func encodePayload(v any, typ string) ([]byte, string, error) {
	if typ == "form" {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "", fmt.Errorf("payload-type form needs an object, got %s", engine.TypeName(v))
		}
		form := url.Values{}
		for k, fv := range m {
			switch x := fv.(type) {
			case nil:
			case []any:
				for _, e := range x {
					form.Add(k, scalarText(e))
				}
			default:
				form.Set(k, scalarText(x))
			}
		}
		return []byte(form.Encode()), "application/x-www-form-urlencoded", nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, "", err
	}
	return b, "application/json", nil
}

// scalarText renders a JSON value as a parameter or header value: strings
// as they are, numbers with their exact text, other values as JSON.
func scalarText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// next fetches and parses the next page. It returns errStop when paging is
// over.
func (p *pager) next(ctx context.Context) (*page, error) {
	if p.done {
		return nil, errStop
	}
	c := p.c
	req := p.pending
	if p.n == 0 {
		var err error
		if req, err = p.build(0, ""); err != nil {
			return nil, err
		}
	}
	if p.n >= c.maxPages {
		return nil, p.fail(p.n, "more than max_pages=%d pages: the next_page_link does not terminate (set next_page_termination_strategy, or raise max_pages)", c.maxPages)
	}
	resp, err := c.sys.Client.Do(ctx, httpclient.Request{
		Method: c.op.Method, URL: req.link, Params: req.params, Headers: req.headers,
		Body: req.body, ContentType: req.contentType, RateLimit: c.rateLimit, NoReplay: p.noReplay,
	})
	if err != nil {
		return nil, fmt.Errorf("%s page %d: %w", c.where, p.n, err)
	}
	if c.trace {
		c.log.InfoContext(ctx, "rest request", "method", resp.Method, "url", c.sys.Client.RedactURL(resp.URL),
			"status", resp.Status, "bytes", len(resp.Body), "attempts", resp.Attempts, "page", p.n)
	}
	pg := &page{index: p.n, req: req, resp: resp, headers: responseHeaders(resp.Header)}
	p.n++
	if err := resp.Err(p.allowed); err != nil {
		return pg, fmt.Errorf("%s page %d: %w", c.where, pg.index, err)
	}
	listing := !p.single && resp.Status/100 == 2
	var rawItems [][]byte
	if p.raw && listing {
		pg.body, pg.isJSON, rawItems, err = p.parseRaw(pg.index, resp)
	} else {
		pg.body, pg.isJSON, err = p.parse(pg.index, resp)
	}
	if err != nil {
		return pg, err
	}
	if !pg.isJSON && listing {
		return pg, p.bodyError(pg.index, resp, fmt.Sprintf("the response is not JSON (Content-Type %q)", resp.Header.Get("Content-Type")))
	}
	v := p.vars(pg.index)
	v["body"] = pg.body
	v["headers"] = pg.headers
	v["response_headers"] = pg.headers
	v["request_headers"] = req.allHeaders
	v["request_params"] = req.paramVals
	v["url"] = resp.URL
	if c.errT != nil {
		msg, err := c.errT.Render(v)
		if err != nil {
			return pg, p.wrap(pg.index, "error_expression", err)
		}
		if strings.TrimSpace(msg) != "" {
			return pg, fmt.Errorf("%s page %d: error_expression: %s", c.where, pg.index, msg)
		}
	}
	if p.prev != nil && c.stop[StopSameResponse] && bytes.Equal(resp.Body, p.prev.resp.Body) {
		// The API answered the same page again: its items were emitted.
		p.done = true
		return nil, errStop
	}
	if listing && p.raw {
		pg.items = len(rawItems)
		if pg.raw, pg.updated, err = p.rawEntities(pg.index, rawItems, v); err != nil {
			return pg, err
		}
	} else if listing {
		items, err := extractItems(pg.body, c.payloadProperty)
		if err != nil {
			return pg, fmt.Errorf("%s page %d: %w", c.where, pg.index, err)
		}
		pg.items, pg.itemList = len(items), items
		if p.entities {
			if pg.entities, err = p.toEntities(pg.index, items, v); err != nil {
				return pg, err
			}
		}
	}
	p.prev = pg
	p.done = true
	if c.nextT == nil || !listing ||
		c.stop[StopEmptyResult] && pg.items == 0 ||
		c.stop[StopNotFullPage] && pg.items < c.op.PageSize {
		return pg, nil
	}
	link, ok := c.nextFast.render(func(n string) (any, bool) { x, ok := v[n]; return x, ok })
	if !ok {
		if link, err = c.nextT.Render(v); err != nil {
			return pg, p.wrap(pg.index, "next_page_link", err)
		}
	}
	link = strings.TrimSpace(link)
	if link == "" {
		return pg, nil // an empty link cannot be followed, whatever the strategies
	}
	nextReq, err := p.build(pg.index+1, link)
	if err != nil {
		return pg, err
	}
	if c.stop[StopSameLink] && nextReq.link == req.link {
		return pg, nil
	}
	if c.stop[StopSameRequest] && nextReq.same(req) {
		return pg, nil
	}
	p.pending = nextReq
	p.done = false
	return pg, nil
}

// parse decodes a response body. A body whose Content-Type is not JSON
// (application/json, */*+json, json_content_types; an absent Content-Type
// is sniffed) is returned as isJSON false; an empty body is nil.
func (p *pager) parse(i int, resp *httpclient.Response) (any, bool, error) {
	if len(bytes.TrimSpace(resp.Body)) == 0 {
		return nil, true, nil
	}
	ct := resp.Header.Get("Content-Type")
	if !isJSONType(ct, p.c.op.JSONContentTypes) {
		if ct != "" || !json.Valid(resp.Body) {
			return nil, false, nil
		}
	}
	v, err := p.dec.DecodeValue(resp.Body)
	if err != nil {
		return nil, false, p.bodyError(i, resp, fmt.Sprintf("invalid JSON: %v", err))
	}
	return v, true, nil
}

// bodyError describes a 2xx response the component cannot use, with the
// method, the redacted URL, the status and the start of the body.
func (p *pager) bodyError(i int, resp *httpclient.Response, msg string) error {
	err := resp.Err(func(int) bool { return false })
	return fmt.Errorf("%s page %d: %s: %w", p.c.where, i, msg, err)
}

func isJSONType(ct string, extra []string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || slices.Contains(extra, mt)
}

// extractItems returns the items of a response body (SPEC d step 5): the
// value of payload_property (exact key first, else a dot path) or the body;
// a list is the items, an object one item, null none.
func extractItems(body any, prop string) ([]any, error) {
	v := body
	if prop != "" {
		m, ok := body.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("payload_property %q: the response is %s, not an object", prop, describeValue(body))
		}
		if v, ok = lookupProperty(m, prop); !ok {
			return nil, fmt.Errorf("payload_property %q is not in the response", prop)
		}
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return x, nil
	case map[string]any:
		return []any{x}, nil
	}
	if prop != "" {
		return nil, fmt.Errorf("payload_property %q is %s, not a list or an object", prop, describeValue(v))
	}
	return nil, fmt.Errorf("the response is %s, not a list or an object", describeValue(v))
}

// lookupProperty finds key in m: the exact key first, else a dot path
// through nested objects.
func lookupProperty(m map[string]any, key string) (any, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	if !strings.Contains(key, ".") {
		return nil, false
	}
	var cur any = m
	for part := range strings.SplitSeq(key, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func describeValue(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// toEntities sets _id (and _updated) on each item. Item fields are
// top-level template names and win over the page variables of the same
// name (body, headers, properties, since, url, request_params).
func (p *pager) toEntities(pi int, items []any, v jinja.Context) ([]engine.Entity, error) {
	out := make([]engine.Entity, len(items))
	ids := make([]string, len(items))
	upd := make([]string, len(items))
	ctx := make(jinja.Context, max(len(p.c.idNames), len(p.c.updNames)))
	for i, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			return nil, p.fail(pi, "item %d is %s, not an object", i, describeValue(it))
		}
		out[i] = m
		var err error
		if ids[i], upd[i], err = p.itemKeys(pi, i, len(items), m, v, ctx); err != nil {
			return nil, err
		}
	}
	for i, e := range out {
		e["_id"] = ids[i]
		if upd[i] != "" {
			e["_updated"] = upd[i]
		}
	}
	return out, nil
}

// itemKeys renders item i's _id and _updated ("" when none is set) from
// the decoded item m of a page of n items; ctx is scratch space for the
// template engine.
func (p *pager) itemKeys(pi, i, n int, m map[string]any, v, ctx jinja.Context) (id, upd string, err error) {
	c := p.c
	lookup := func(n string) (any, bool) {
		if x, ok := m[n]; ok {
			return x, true
		}
		x, ok := v[n]
		return x, ok
	}
	if s, ok := c.idFast.render(lookup); ok {
		id = s
	} else if c.idT != nil {
		fill(ctx, c.idNames, m, v)
		if id, err = c.idT.Render(ctx); err != nil {
			return "", "", fmt.Errorf("%s page %d: item %d: id_expression: %w", c.where, pi, i, err)
		}
	} else {
		id, _ = m["_id"].(string)
		if id == "" && n == 1 {
			id = p.defaultID
		}
		if id == "" {
			return "", "", p.fail(pi, "item %d has no _id and the operation has no id_expression", i)
		}
	}
	if id == "" {
		return "", "", p.fail(pi, "item %d: id_expression %q rendered an empty _id", i, c.idExpr)
	}
	if s, ok := c.updFast.render(lookup); ok {
		upd = s
	} else if c.updT != nil {
		fill(ctx, c.updNames, m, v)
		if upd, err = c.updT.Render(ctx); err != nil {
			return "", "", fmt.Errorf("%s page %d: item %d (_id %s): updated_expression: %w", c.where, pi, i, engine.QuoteID(id), err)
		}
	}
	return id, upd, nil
}

// simplePath matches a template that only prints a name or a dotted
// attribute path: `{{ id }}`, `{{ body.nextPageUrl }}`.
var simplePath = regexp.MustCompile(`^\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}$`)

// fastPath is the name path a simple template prints; nil for others.
type fastPath []string

// pathOf returns the path of a `{{ a.b.c }}` template, else nil.
func pathOf(src string) fastPath {
	if m := simplePath.FindStringSubmatch(src); m != nil {
		return strings.Split(m[1], ".")
	}
	return nil
}

// render prints the path's value the way Jinja does for strings (as they
// are), numbers (their exact text) and, at the end of a path, None (""),
// without the template engine: most id_expression, updated_expression and
// next_page_link strings of the corpus, evaluated once per item or page
// (the engine converts its whole context, e.g. a 1,000-item body, on every
// render). A missing name or key, or any other type, returns false and the
// caller renders with the engine, which gives the same text or the strict
// undefined error.
func (f fastPath) render(root func(name string) (any, bool)) (string, bool) {
	if f == nil {
		return "", false
	}
	v, ok := root(f[0])
	if !ok {
		return "", false
	}
	for _, k := range f[1:] {
		m, isMap := v.(map[string]any)
		if !isMap {
			return "", false
		}
		if v, ok = m[k]; !ok {
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case nil:
		return "", len(f) > 1
	}
	return "", false
}

// fill sets ctx to exactly the names a template reads, from the item first,
// else from the page variables.
func fill(ctx jinja.Context, names []string, item map[string]any, v jinja.Context) {
	clear(ctx)
	for _, n := range names {
		if x, ok := item[n]; ok {
			ctx[n] = x
		} else if x, ok := v[n]; ok {
			ctx[n] = x
		}
	}
}

// responseHeaders exposes response headers to templates: one string per
// name (values joined with ", "), under the canonical name and in lower
// case; Link is parsed (RFC 5988) into rel -> URL, so that
// `headers.Link.next` is the next link.
func responseHeaders(h http.Header) map[string]any {
	m := make(map[string]any, 2*len(h))
	for k, vs := range h {
		var v any = strings.Join(vs, ", ")
		if strings.EqualFold(k, "Link") {
			if links := ParseLinkHeader(v.(string)); len(links) > 0 {
				lm := make(map[string]any, len(links))
				for rel, u := range links {
					lm[rel] = u
				}
				v = lm
			}
		}
		m[k] = v
		m[strings.ToLower(k)] = v
	}
	return m
}

// ParseLinkHeader parses an RFC 5988 Link header value into rel -> URL.
// A link with several relation types ("next last") is listed under each;
// the first link of a relation wins. Malformed parts are skipped.
func ParseLinkHeader(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		s = strings.TrimLeft(s, " \t,")
		if !strings.HasPrefix(s, "<") {
			// Skip to the next link.
			i := strings.IndexByte(s, ',')
			if i < 0 {
				break
			}
			s = s[i+1:]
			continue
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			break
		}
		target := strings.TrimSpace(s[1:end])
		s = s[end+1:]
		var rels []string
		// Parameters up to the next top-level comma.
		for {
			s = strings.TrimLeft(s, " \t")
			if !strings.HasPrefix(s, ";") {
				break
			}
			s = strings.TrimLeft(s[1:], " \t")
			eq := strings.IndexAny(s, "=;,")
			if eq < 0 {
				s = ""
				break
			}
			name := strings.ToLower(strings.TrimSpace(s[:eq]))
			if s[eq] != '=' {
				s = s[eq:]
				continue
			}
			s = strings.TrimLeft(s[eq+1:], " \t")
			var val string
			if strings.HasPrefix(s, `"`) {
				close := strings.IndexByte(s[1:], '"')
				if close < 0 {
					val, s = s[1:], ""
				} else {
					val, s = s[1:close+1], s[close+2:]
				}
			} else {
				stop := strings.IndexAny(s, ";,")
				if stop < 0 {
					stop = len(s)
				}
				val, s = strings.TrimSpace(s[:stop]), s[stop:]
			}
			if name == "rel" {
				rels = append(rels, strings.Fields(strings.ToLower(val))...)
			}
		}
		for _, r := range rels {
			if _, dup := out[r]; !dup {
				out[r] = target
			}
		}
	}
	return out
}
