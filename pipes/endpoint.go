package pipes

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/templates/jinja"
)

const endpointSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "http_endpoint source",
  "type": "object",
  "properties": {
    "type": {"const": "http_endpoint"},
    "comment": {},
    "validation_expression": {"description": "Runtime Jinja checked after authentication; output that is not empty after trimming refuses the request (400) with it as the message.", "type": "string"},
    "webhook_secret": {"description": "HMAC-SHA256 secret: requests must carry the body's signature in X-Hub-Signature-256 (or signature_header); \"$SECRET(name)\" reads the secret store per request.", "type": "string", "minLength": 1},
    "signature_header": {"description": "The header holding the signature \"sha256=<hex>\" (default X-Hub-Signature-256).", "type": "string", "minLength": 1},
    "allow_anonymous": {"description": "Accept unauthenticated writes (pair it with a validation_expression).", "type": "boolean"},
    "auto_populate_dataset": {"description": "Sesam key, accepted; no effect in Ferry.", "type": "boolean"},
    "supports_signalling": {"description": "Whether changes in the input datasets trigger a run (default: true unless the pump sets a cron or an interval under one hour).", "type": "boolean"},
    "if_source_empty": {"description": "Accepted; a push source has no full runs.", "enum": ["accept", "fail"]}
  }
}`

// DefaultSignatureHeader carries the webhook signature
// "sha256=<hex HMAC-SHA256 of the body>" (GitHub's convention).
const DefaultSignatureHeader = "X-Hub-Signature-256"

// MaxReceiveBytes caps the body of one POST to a receiver (64 MiB); a
// larger body is refused with 413.
const MaxReceiveBytes = 64 << 20

// EndpointSource is Sesam's http_endpoint source: it has no pump and
// reads nothing; entities are POSTed (a JSON object or an array of
// objects) to /api/receivers/{pipe}/entities of `ferry serve` and written
// by [engine.Engine.Receive] through the pipe's transforms to its sink, one
// transaction per request, without deletion tracking. See [Receivers] for
// authentication and validation.
type EndpointSource struct {
	Pipe string
	// Validation is validation_expression (nil when absent).
	Validation *jinja.Template
	// Secret is webhook_secret ("" when absent); a whole-value
	// "$SECRET(name)" is resolved per request by ReceiverOptions.Secret.
	Secret string
	// SignatureHeader carries the HMAC signature (default
	// DefaultSignatureHeader).
	SignatureHeader string
	// Anonymous is true when the pipe lets unauthenticated clients write
	// (allow_anonymous, or a permissions rule allowing group:Anonymous
	// write_data, as sesam-py's use_webhook_secret sets).
	Anonymous bool
}

func newEndpointSource(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	s := &EndpointSource{Pipe: b.Pipe, SignatureHeader: DefaultSignatureHeader}
	if expr, ok := cfg["validation_expression"].(string); ok && strings.TrimSpace(expr) != "" {
		t, err := jinja.Compile(expr)
		if err != nil {
			return nil, engine.Fieldf("/validation_expression", "%v", err)
		}
		s.Validation = t
	}
	s.Secret, _ = cfg["webhook_secret"].(string)
	if h, ok := cfg["signature_header"].(string); ok {
		s.SignatureHeader = h
	}
	s.Anonymous, _ = cfg["allow_anonymous"].(bool)
	if b.Config != nil {
		if p := b.Config.Pipe(b.Pipe); p != nil && anonymousWrite(p.Raw["permissions"]) {
			s.Anonymous = true
		}
	}
	return s, nil
}

// anonymousWrite evaluates Sesam pipe permissions
// ([["allow"|"deny", [principals], [permissions]], ...]) for
// group:Anonymous and write_data: the first matching rule decides; none
// means no.
func anonymousWrite(v any) bool {
	rules, _ := v.([]any)
	for _, r := range rules {
		rule, _ := r.([]any)
		if len(rule) != 3 {
			continue
		}
		if containsString(rule[1], "group:Anonymous") && (containsString(rule[2], "write_data") || containsString(rule[2], "*")) {
			return rule[0] == "allow"
		}
	}
	return false
}

func containsString(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return x == want
	case []any:
		for _, e := range x {
			if e == want {
				return true
			}
		}
	}
	return false
}

// SupportsSince is true so that no pull run is ever a deletion-tracking
// full run (engine runs of push sources are no-ops anyway).
func (s *EndpointSource) SupportsSince() bool { return true }

// PushOnly marks the source as fed by engine.Engine.Receive.
func (s *EndpointSource) PushOnly() {}

// Open returns a reader with nothing to read: entities arrive by POST.
func (s *EndpointSource) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	return emptyReader{}, nil
}

type emptyReader struct{}

func (emptyReader) Next(context.Context) (engine.Batch, error) { return engine.Batch{}, engine.EOF }
func (emptyReader) Close() error                               { return nil }

// ReceiverOptions configure the receiver handlers.
type ReceiverOptions struct {
	// APIToken is the bearer token (FERRY_API_TOKEN) that authorises writes
	// to pipes that neither allow anonymous writes nor were signed with
	// their webhook secret. Empty: such writes are refused with 403.
	APIToken string
	// Secret resolves secret(name) in the validation expression of pipe
	// and a "$SECRET(name)" webhook_secret; nil means no secrets are
	// available (secret("webhook_secret") still returns a literal
	// webhook_secret).
	Secret func(ctx context.Context, pipe, name string) (string, error)
	// Written, if set, is called after a request changed the pipe's
	// dataset (serve uses it to signal the pipes that read it).
	Written func(pipe string, rec engine.RunRecord)
	Logger  *slog.Logger
}

// Receivers returns one handler per pipe of eng's plan whose source is an
// http_endpoint, keyed by the route to mount it on:
// "POST /api/receivers/{pipe}/entities".
//
// A request is handled in this order:
//
//  1. Authentication. With webhook_secret set, the signature header
//     ("sha256=<hex>", HMAC-SHA256 of the raw body with the secret) must be
//     valid, else 401 — unless the request carries the API token. Without
//     a secret, a pipe that allows anonymous writes accepts anyone;
//     otherwise "Authorization: Bearer <FERRY_API_TOKEN>" is required (401
//     when wrong or missing), and when no token is configured the write is
//     refused with 403 and a message saying how to allow it.
//  2. validation_expression, rendered with request_body (the raw body
//     text, so it can be HMAC'ed: hmacsha256digest(secret('s'),
//     request_body)), request_json (the parsed body, Ferry extension),
//     request_headers (canonical and lower-case names), request_params
//     (first value per query parameter), url and secret(). Output that is
//     empty after trimming accepts; anything else is refused with 400 and
//     the output as the message.
//  3. The body must be a JSON object or an array of objects, each with a
//     non-empty string _id (400 otherwise); it is written with engine.Engine.Receive: 200 and the
//     run record, 400 for an invalid entity, 500 for other failures.
func Receivers(eng *engine.Engine, opts ReceiverOptions) map[string]http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	out := map[string]http.Handler{}
	for _, p := range eng.Plan.Pipes {
		src, ok := p.Source.(*EndpointSource)
		if !ok {
			continue
		}
		h := &receiver{eng: eng, src: src, opts: opts}
		if src.Validation != nil {
			// Recompile with a secret() bound to the handler's resolver;
			// the source compiled it once already, so this cannot fail
			// for syntax, only (never) differently.
			t, err := jinja.CompileWith(src.Validation.Source(), jinja.Options{Secret: h.secretFunc})
			if err != nil {
				h.compileErr = err
			}
			h.validation = t
		}
		out["POST /api/receivers/"+p.ID+"/entities"] = h
	}
	return out
}

type receiver struct {
	eng        *engine.Engine
	src        *EndpointSource
	opts       ReceiverOptions
	validation *jinja.Template
	compileErr error
}

// secretRef matches a whole-value "$SECRET(name)".
var secretRef = regexp.MustCompile(`^\$SECRET\(([A-Za-z0-9_.-]+)\)$`)

// secretFunc resolves secret(name) for the validation expression. The
// jinja Options cannot carry the request context, so resolution uses a
// background context; resolvers are expected to be local (the store).
func (h *receiver) secretFunc(name string) (string, error) {
	return h.resolveSecret(context.Background(), name)
}

func (h *receiver) resolveSecret(ctx context.Context, name string) (string, error) {
	if h.opts.Secret != nil {
		v, err := h.opts.Secret(ctx, h.src.Pipe, name)
		if err == nil {
			return v, nil
		}
		if name != "webhook_secret" || h.src.Secret == "" || secretRef.MatchString(h.src.Secret) {
			return "", err
		}
	}
	if name == "webhook_secret" && h.src.Secret != "" && !secretRef.MatchString(h.src.Secret) {
		return h.src.Secret, nil
	}
	return "", fmt.Errorf("secret %q is not available", name)
}

// webhookSecret returns the pipe's webhook secret, resolving $SECRET(name).
func (h *receiver) webhookSecret(ctx context.Context) (string, error) {
	if m := secretRef.FindStringSubmatch(h.src.Secret); m != nil {
		if h.opts.Secret == nil {
			return "", fmt.Errorf("webhook_secret refers to secret %q but no secret store is available", m[1])
		}
		return h.opts.Secret(ctx, h.src.Pipe, m[1])
	}
	return h.src.Secret, nil
}

func (h *receiver) fail(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
	h.opts.Logger.Warn("receiver refused a request", "pipe", h.src.Pipe, "status", status, "error", msg)
}

func (h *receiver) hasToken(r *http.Request) bool {
	if h.opts.APIToken == "" {
		return false
	}
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(h.opts.APIToken)) == 1
}

func (h *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	pipe := h.src.Pipe
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReceiveBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxReceiveBytes))
			return
		}
		h.fail(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}

	// 1. Authentication.
	switch {
	case h.src.Secret != "":
		if h.hasToken(r) {
			break
		}
		secret, err := h.webhookSecret(ctx)
		if err != nil {
			h.fail(w, http.StatusInternalServerError, fmt.Sprintf("pipe %q: %v", pipe, err))
			return
		}
		sig := r.Header.Get(h.src.SignatureHeader)
		if sig == "" {
			h.fail(w, http.StatusUnauthorized, fmt.Sprintf("missing signature header %s", h.src.SignatureHeader))
			return
		}
		if !validSignature(secret, body, sig) {
			h.fail(w, http.StatusUnauthorized, fmt.Sprintf("bad signature in %s", h.src.SignatureHeader))
			return
		}
	case h.src.Anonymous:
	case h.opts.APIToken == "":
		h.fail(w, http.StatusForbidden, fmt.Sprintf("pipe %q accepts no unauthenticated writes and no API token is configured: set FERRY_API_TOKEN and send it as \"Authorization: Bearer <token>\", or give the source a webhook_secret, or allow anonymous writes (\"allow_anonymous\": true or permissions [[\"allow\", [\"group:Anonymous\"], [\"write_data\"]]])", pipe))
		return
	case !h.hasToken(r):
		h.fail(w, http.StatusUnauthorized, "missing or wrong API token (Authorization: Bearer <FERRY_API_TOKEN>)")
		return
	}

	// The body is parsed before validation so the expression can see it.
	parsed, perr := engine.DecodeValue(body)

	// 2. Validation expression.
	if h.compileErr != nil {
		h.fail(w, http.StatusInternalServerError, h.compileErr.Error())
		return
	}
	if h.validation != nil {
		out, err := h.validation.Render(validationContext(r, body, parsed, perr))
		if err != nil {
			h.fail(w, http.StatusBadRequest, "validation_expression: "+err.Error())
			return
		}
		if msg := strings.TrimSpace(out); msg != "" {
			h.fail(w, http.StatusBadRequest, "rejected by validation_expression: "+msg)
			return
		}
	}

	// 3. Entities.
	if perr != nil {
		h.fail(w, http.StatusBadRequest, "body is not JSON: "+perr.Error())
		return
	}
	var ents []engine.Entity
	switch x := parsed.(type) {
	case map[string]any:
		ents = []engine.Entity{x}
	case []any:
		ents = make([]engine.Entity, 0, len(x))
		for i, v := range x {
			m, ok := v.(map[string]any)
			if !ok {
				h.fail(w, http.StatusBadRequest, fmt.Sprintf("element %d of the array is %s, not an object", i, engine.TypeName(v)))
				return
			}
			ents = append(ents, m)
		}
	default:
		h.fail(w, http.StatusBadRequest, fmt.Sprintf("body is %s; send a JSON object or an array of objects", engine.TypeName(parsed)))
		return
	}
	for i, ent := range ents {
		if id, _ := ent["_id"].(string); id == "" {
			h.fail(w, http.StatusBadRequest, fmt.Sprintf("element %d has no string _id", i))
			return
		}
	}
	rec, err := h.eng.Receive(ctx, pipe, ents)
	if err != nil {
		status := http.StatusInternalServerError
		var ee *engine.EntityError
		if errors.As(err, &ee) || strings.Contains(err.Error(), "invalid entity") {
			status = http.StatusBadRequest
		}
		h.fail(w, status, err.Error())
		return
	}
	if h.opts.Written != nil && rec.Written+rec.Deleted > 0 {
		h.opts.Written(pipe, rec)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(rec)
}

// validSignature checks "sha256=<hex>" (the prefix is optional) against
// the HMAC-SHA256 of body.
func validSignature(secret string, body []byte, header string) bool {
	got := strings.TrimSpace(header)
	if p, rest, ok := strings.Cut(got, "="); ok {
		if !strings.EqualFold(p, "sha256") {
			return false
		}
		got = rest
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(sig, m.Sum(nil))
}

func validationContext(r *http.Request, body []byte, parsed any, perr error) jinja.Context {
	headers := map[string]any{}
	for k, v := range r.Header {
		joined := strings.Join(v, ", ")
		headers[k] = joined
		headers[strings.ToLower(k)] = joined
	}
	params := map[string]any{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			params[k] = v[0]
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	ctx := jinja.Context{
		"request_body":    string(body),
		"request_headers": headers,
		"request_params":  params,
		"url":             scheme + "://" + r.Host + r.URL.RequestURI(),
	}
	if perr == nil {
		ctx["request_json"] = parsed
	} else {
		ctx["request_json"] = nil
	}
	return ctx
}
