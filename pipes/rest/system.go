package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/templates/jinja"
)

// DefaultMaxPages is the page guard of a paged request when neither the
// operation nor the pipe sets max_pages: a next_page_link that never
// terminates fails the run after this many pages instead of looping forever.
const DefaultMaxPages = 100000

// Termination strategies of next_page_termination_strategy (SPEC d, step 7).
const (
	StopLinkEmpty    = "next-page-link-empty"
	StopSameLink     = "same-next-page-link"
	StopSameRequest  = "same-next-page-request"
	StopSameResponse = "same-response"
	StopEmptyResult  = "empty-result"
	StopNotFullPage  = "not-full-page"
)

// DefaultTermination is used when an operation sets no
// next_page_termination_strategy.
var defaultTermination = []string{StopLinkEmpty, StopSameRequest, StopSameResponse}

var knownStrategies = []string{StopLinkEmpty, StopSameLink, StopSameRequest, StopSameResponse, StopEmptyResult, StopNotFullPage}

// System is a compiled system:rest: its HTTP client, its named operations
// with every Jinja string compiled, and the template set they share.
type System struct {
	// ID is the system's _id.
	ID string
	// Client sends the system's requests (auth, retries, rate limits).
	Client *httpclient.Client
	// Headers are the system's static headers (also sent by Client); the
	// REST components expose them to templates as part of the request
	// headers.
	Headers map[string]string
	// Operations are the system's operations by name.
	Operations map[string]*Operation
	// Templates compiles and caches every runtime template of the system
	// and of the pipes that use it.
	Templates *jinja.Set
	// Logger logs on the system's behalf.
	Logger *slog.Logger
}

// Operation is one named REST operation (SPEC d "REST source", f "rest").
// Template strings are kept as written and compiled into the system's
// template set when the operation is parsed.
type Operation struct {
	// Name is the operation's key in its operations map.
	Name string
	// Method is the HTTP method (default GET).
	Method string
	// URL is the url template (relative to url_pattern or absolute).
	URL string
	// Params, Headers and Payload are JSON trees whose strings are
	// templates (nil when absent).
	Params, Headers map[string]any
	// Payload is the request body template; nil sends no body.
	Payload any
	// PayloadType is "json" (default) or "form".
	PayloadType string
	// PayloadProperty names the response property holding the items
	// (exact key first, else a dot path).
	PayloadProperty string
	// IDExpression, UpdatedExpression, ErrorExpression and NextPageLink are
	// templates ("" when absent).
	IDExpression, UpdatedExpression, ErrorExpression, NextPageLink string
	// Termination lists the next_page_termination_strategy entries.
	Termination []string
	// PageSize is page_size (0 when absent); needed by not-full-page.
	PageSize int
	// MaxPages guards paging (0 = DefaultMaxPages).
	MaxPages int
	// SinceName and SinceLocation are since_property_name (default
	// "since") and since_property_location ("query", "header" or
	// "manual"; default "query").
	SinceName, SinceLocation string
	// JSONContentTypes lists extra content types parsed as JSON besides
	// application/json and */*+json (json_content_types).
	JSONContentTypes []string
}

const operationSchema = `{
      "type": "object",
      "properties": {
        "method": {"description": "The HTTP method (default GET).", "type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "get", "post", "put", "patch", "delete", "head", "options"]},
        "url": {"description": "The URL template, relative to url_pattern or absolute (runtime Jinja).", "type": "string"},
        "params": {"description": "Query parameters; values are templates. A value containing sesam:markskip drops the key; one ending in sesam:markjson is parsed as JSON.", "type": "object"},
        "headers": {"description": "Request headers; values are templates.", "type": "object"},
        "payload": {"description": "The request body; strings in it are templates."},
        "payload-type": {"description": "How the payload is sent: json (default) or form.", "enum": ["json", "form"]},
        "payload_property": {"description": "Where the records are in the response: an exact key, else a dot path; without it a list body is the records and an object body one record.", "type": "string"},
        "id_expression": {"description": "Template for each record's _id (the record's fields are top-level names).", "type": "string"},
        "updated_expression": {"description": "Template for each record's _updated (the since token).", "type": "string"},
        "error_expression": {"description": "Template rendered on each response; a non-empty result fails the run (errors inside 200 responses).", "type": "string"},
        "next_page_link": {"description": "Template for the next page's URL (absolute, or relative to url_pattern); empty ends paging.", "type": "string"},
        "next_page_termination_strategy": {"description": "When paging stops: next-page-link-empty, same-next-page-link, same-next-page-request, same-response, empty-result, not-full-page (needs page_size). Default the first three.", "oneOf": [
          {"type": "string"},
          {"type": "array", "items": {"type": "string"}}
        ]},
        "page_size": {"description": "Records per page (the page_size template variable; needed by not-full-page).", "type": "integer", "minimum": 1},
        "max_pages": {"description": "A run fails after this many pages (default 100000).", "type": "integer", "minimum": 1},
        "since_property_name": {"description": "The name the since token is sent under (default since).", "type": "string", "minLength": 1},
        "since_property_location": {"description": "Where the since token goes: query (default), header, or manual (the templates read since themselves).", "enum": ["query", "header", "manual"]},
        "json_content_types": {"description": "More content types whose bodies are parsed as JSON.", "type": "array", "items": {"type": "string"}},
        "description": {"description": "Free text, ignored."}
      }
    }`

const systemSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "rest system",
  "type": "object",
  "properties": {
    "_id": {"type": "string"},
    "type": {"const": "system:rest"},
    "name": {"type": "string"},
    "description": {},
    "comment": {},
    "metadata": {"type": "object"},
    "url_pattern": {"description": "The base URL with %s where an operation's url goes.", "type": "string"},
    "base_url": {"description": "Used as url_pattern when that is absent.", "type": "string"},
    "headers": {"description": "Headers sent with every request.", "type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
    "verify_ssl": {"description": "false skips TLS certificate checks (unsafe).", "type": ["boolean", "string"]},
    "custom_ca_pem_chain": {"description": "PEM certificates trusted besides the system's roots.", "type": "string"},
    "authentication": {"description": "basic (with username and password); other schemes are refused.", "type": "string"},
    "username": {"description": "Basic authentication user.", "type": "string"},
    "password": {"description": "Basic authentication password; use $SECRET(name).", "type": "string"},
    "jwt_token": {"description": "A static bearer token; use $SECRET(name).", "type": "string"},
    "oauth2": {"description": "OAuth2: client credentials (client_id, client_secret, token_url), a refresh token, or a static access_token.", 
      "type": "object",
      "properties": {
        "client_id": {"description": "OAuth2 client id.", "type": "string"},
        "client_secret": {"description": "OAuth2 client secret; use $SECRET(name).", "type": "string"},
        "token_url": {"description": "The token endpoint.", "type": "string"},
        "access_token": {"description": "A token to use first (or only, without token_url).", "type": "string"},
        "refresh_token": {"description": "Use the refresh-token flow with this token.", "type": "string"},
        "refresh_window": {"description": "Seconds before expiry a token is refreshed (default 30).", "type": ["number", "string"]},
        "scope": {"description": "Scopes requested (a space-separated string or a list).", "type": ["string", "array"]},
        "scopes": {"description": "Same as scope.", "type": ["string", "array"]},
        "extra": {"description": "Extra token request parameters.", "type": "object"}
      }
    },
    "rate_limiting_retries": {"description": "Retries of a 429 response (default 3).", "type": ["integer", "string"]},
    "rate_limiting_delay": {"description": "Seconds between 429 retries unless Retry-After says otherwise (default 1).", "type": ["number", "string"]},
    "retry_strategy": {"description": "Retry rules by status set (\"500,502\", \"400-499\", \"default\"): {\"retries\": N, \"delay\": seconds}.", "type": "object"},
    "worker_threads": {"description": "Requests in flight at once (default 4).", "type": ["integer", "string"]},
    "requests_per_second": {"description": "Rate limit on request attempts (Ferry extension; default unlimited).", "type": ["number", "string"]},
    "connect_timeout": {"description": "Seconds to connect.", "type": ["number", "string"]},
    "read_timeout": {"description": "Seconds per request attempt.", "type": ["number", "string"]},
    "operations": {"description": "Named operations that sources, transforms, sinks and share templates use.", "type": "object", "additionalProperties": ` + operationSchema + `}
  }
}`

// newSystemFunc returns the system:rest constructor using opts.
func newSystemFunc(opts Options) engine.SystemFunc {
	return func(b *engine.Build, cfg map[string]any) (any, error) {
		if b.Config != nil && b.Config.Redactor != nil {
			// The config's secrets, wherever the system uses them, are
			// scrubbed from what its client reports (operation URLs,
			// payloads, echoed error bodies).
			o := opts
			o.HTTPOptions = append(slices.Clone(opts.HTTPOptions), httpclient.WithRedact(b.Config.Redactor.Redact))
			return NewSystem(b.Logger, cfg, o)
		}
		return NewSystem(b.Logger, cfg, opts)
	}
}

// NewSystem parses a system:rest config (with $ENV and $SECRET already
// resolved): the HTTP settings through httpclient.ParseSystem and every
// operation, compiling each operation's templates once. It does no I/O.
// Errors are *engine.FieldError values pointing at the offending key.
func NewSystem(logger *slog.Logger, cfg map[string]any, opts Options) (*System, error) {
	if logger == nil {
		logger = slog.Default()
	}
	hc, err := httpclient.ParseSystem(cfg)
	if err != nil {
		return nil, configFieldError(err)
	}
	if hc.URLPattern == "" {
		return nil, engine.Fieldf("/url_pattern", "system:rest needs url_pattern (or base_url)")
	}
	id := hc.SystemID
	copts := append([]httpclient.Option{httpclient.WithLogger(logger)}, opts.HTTPOptions...)
	client, err := httpclient.New(hc, copts...)
	if err != nil {
		return nil, configFieldError(err)
	}
	s := &System{
		ID:        id,
		Client:    client,
		Headers:   hc.Headers,
		Templates: newTemplateSet(),
		Logger:    logger.With("system", id),
	}
	if s.Headers == nil {
		s.Headers = map[string]string{}
	}
	ops, err := parseOperations(s.Templates, cfg["operations"], "/operations")
	if err != nil {
		return nil, err
	}
	s.Operations = ops
	return s, nil
}

// newTemplateSet returns the template set of one system. secret() is not
// available to runtime templates: $SECRET(name) in the system config is the
// way to use secrets, resolved before the system is built.
func newTemplateSet() *jinja.Set {
	return jinja.NewSet(jinja.Options{Secret: func(string) (string, error) {
		return "", errors.New("secret() not available")
	}})
}

// configFieldError turns httpclient's joined *ConfigError values into one
// engine field error: the first problem's key becomes the JSON pointer and
// the others are appended to the message.
func configFieldError(err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var first *httpclient.ConfigError
	var msgs []string
	for _, e := range errs {
		var ce *httpclient.ConfigError
		if errors.As(e, &ce) {
			if first == nil {
				first = ce
				msgs = append(msgs, ce.Err.Error())
				continue
			}
			msgs = append(msgs, ce.Key+": "+ce.Err.Error())
			continue
		}
		msgs = append(msgs, e.Error())
	}
	if first == nil {
		return engine.Fieldf("", "%s", strings.Join(msgs, "; "))
	}
	return engine.Fieldf("/"+strings.ReplaceAll(first.Key, ".", "/"), "%s", strings.Join(msgs, "; "))
}

// parseOperations parses an operations object (system or pipe level).
func parseOperations(set *jinja.Set, v any, ptr string) (map[string]*Operation, error) {
	ops := map[string]*Operation{}
	if v == nil {
		return ops, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, engine.Fieldf(ptr, "operations must be an object of name -> operation")
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		om, ok := m[name].(map[string]any)
		if !ok {
			return nil, engine.Fieldf(ptr+"/"+pointerEscape(name), "operation must be an object")
		}
		op, err := parseOperation(set, name, om, ptr+"/"+pointerEscape(name))
		if err != nil {
			return nil, err
		}
		ops[name] = op
	}
	return ops, nil
}

func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// parseOperation reads one operation and compiles its templates.
func parseOperation(set *jinja.Set, name string, m map[string]any, ptr string) (*Operation, error) {
	op := &Operation{Name: name, Method: http.MethodGet, PayloadType: "json", SinceName: "since", SinceLocation: "query"}
	var err error
	str := func(key string, dst *string) {
		if err != nil {
			return
		}
		v, ok := m[key]
		if !ok || v == nil {
			return
		}
		s, ok := v.(string)
		if !ok {
			err = engine.Fieldf(ptr+"/"+key, "expected a string")
			return
		}
		*dst = s
	}
	str("method", &op.Method)
	str("url", &op.URL)
	str("payload-type", &op.PayloadType)
	str("payload_property", &op.PayloadProperty)
	str("id_expression", &op.IDExpression)
	str("updated_expression", &op.UpdatedExpression)
	str("error_expression", &op.ErrorExpression)
	str("next_page_link", &op.NextPageLink)
	str("since_property_name", &op.SinceName)
	str("since_property_location", &op.SinceLocation)
	if err != nil {
		return nil, err
	}
	op.Method = strings.ToUpper(op.Method)
	if op.Method == "" {
		op.Method = http.MethodGet
	}
	switch op.PayloadType {
	case "json", "form":
	default:
		return nil, engine.Fieldf(ptr+"/payload-type", "%q is not supported (json or form)", op.PayloadType)
	}
	switch op.SinceLocation {
	case "query", "header", "manual":
	default:
		return nil, engine.Fieldf(ptr+"/since_property_location", "%q is not query, header or manual", op.SinceLocation)
	}
	if op.SinceName == "" {
		op.SinceName = "since"
	}
	if v, ok := m["params"]; ok && v != nil {
		if op.Params, ok = v.(map[string]any); !ok {
			return nil, engine.Fieldf(ptr+"/params", "expected an object")
		}
	}
	if v, ok := m["headers"]; ok && v != nil {
		if op.Headers, ok = v.(map[string]any); !ok {
			return nil, engine.Fieldf(ptr+"/headers", "expected an object")
		}
	}
	op.Payload = m["payload"]
	if op.Termination, err = parseTermination(m["next_page_termination_strategy"], ptr+"/next_page_termination_strategy"); err != nil {
		return nil, err
	}
	if op.PageSize, err = positiveInt(m, "page_size", ptr); err != nil {
		return nil, err
	}
	if op.MaxPages, err = positiveInt(m, "max_pages", ptr); err != nil {
		return nil, err
	}
	if v, ok := m["json_content_types"].([]any); ok {
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, engine.Fieldf(fmt.Sprintf("%s/json_content_types/%d", ptr, i), "expected a string")
			}
			op.JSONContentTypes = append(op.JSONContentTypes, strings.ToLower(s))
		}
	}
	if slices.Contains(op.Termination, StopNotFullPage) && op.PageSize == 0 {
		return nil, engine.Fieldf(ptr+"/next_page_termination_strategy", "%s needs page_size", StopNotFullPage)
	}
	checks := []struct {
		key string
		v   any
	}{
		{"url", op.URL}, {"params", asAny(op.Params)}, {"headers", asAny(op.Headers)}, {"payload", op.Payload},
		{"id_expression", op.IDExpression}, {"updated_expression", op.UpdatedExpression},
		{"error_expression", op.ErrorExpression}, {"next_page_link", op.NextPageLink},
	}
	for _, c := range checks {
		if err := compileTree(set, c.v); err != nil {
			return nil, engine.Fieldf(ptr+"/"+c.key, "%v", err)
		}
	}
	return op, nil
}

func asAny(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func positiveInt(m map[string]any, key, ptr string) (int, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return 0, nil
	}
	var n int64
	var err error
	switch x := v.(type) {
	case json.Number:
		n, err = x.Int64()
	case float64:
		n = int64(x)
		if float64(n) != x {
			err = errors.New("not an integer")
		}
	case int:
		n = int64(x)
	case string:
		n, err = strconv.ParseInt(x, 10, 64)
	default:
		err = errors.New("not an integer")
	}
	if err != nil || n < 1 || n > 1<<31 {
		return 0, engine.Fieldf(ptr+"/"+key, "expected a positive integer")
	}
	return int(n), nil
}

func parseTermination(v any, ptr string) ([]string, error) {
	var out []string
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		out = []string{x}
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, engine.Fieldf(fmt.Sprintf("%s/%d", ptr, i), "expected a string")
			}
			out = append(out, s)
		}
	default:
		return nil, engine.Fieldf(ptr, "expected a string or a list of strings")
	}
	for _, s := range out {
		if !slices.Contains(knownStrategies, s) {
			return nil, engine.Fieldf(ptr, "unknown strategy %q (known: %s)", s, strings.Join(knownStrategies, ", "))
		}
	}
	return out, nil
}

// compileTree compiles every string of a JSON tree (map keys included) into
// set, so that syntax errors surface when the config is built.
func compileTree(set *jinja.Set, v any) error {
	return walkTree(v, func(src string) error {
		_, err := set.Compile(src)
		return err
	})
}

// walkTree calls fn with every string of a config value that RenderTree
// renders (map keys, in order, and values, in lists too) and stops at its
// first error, naming the key or index.
func walkTree(v any, fn func(src string) error) error {
	switch x := v.(type) {
	case string:
		return fn(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := fn(k); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
			if err := walkTree(x[k], fn); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
		}
	case []any:
		for i, e := range x {
			if err := walkTree(e, fn); err != nil {
				return fmt.Errorf("index %d: %w", i, err)
			}
		}
	}
	return nil
}

// lookupOperation finds an operation: the pipe's own operations first,
// then the system's.
func lookupOperation(name string, pipeOps map[string]*Operation, sys *System) (*Operation, bool) {
	if op, ok := pipeOps[name]; ok {
		return op, true
	}
	op, ok := sys.Operations[name]
	return op, ok
}

// operationNames lists the known operation names for error messages.
func operationNames(pipeOps map[string]*Operation, sys *System) string {
	var names []string
	for n := range pipeOps {
		names = append(names, n)
	}
	for n := range sys.Operations {
		if _, dup := pipeOps[n]; !dup {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
