package pipes

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/since"
)

const jsonSourceSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "json source",
  "type": "object",
  "required": ["url"],
  "properties": {
    "type": {"const": "json"},
    "comment": {},
    "system": {"description": "A system:url the url is resolved against; without one, url is a local file (relative to the config file) or a file:// or http(s) URL.", "type": "string"},
    "url": {"description": "Where to read a JSON array, NDJSON or concatenated objects.", "type": "string", "minLength": 1},
    "format": {"description": "auto (default): a JSON array, NDJSON or concatenated values, told apart while reading. ndjson: one value per line, split at newlines without walking the values (faster to read); a line that is not exactly one JSON value is an error that names the line.", "enum": ["auto", "ndjson"]},
    "headers": {"description": "Extra request headers.", "type": "object", "additionalProperties": {"type": "string"}},
    "supports_since": {"description": "Send the stored token as ?since= and keep the largest _updated as the next token.", "type": "boolean"},
    "is_since_comparable": {"description": "Sesam key, accepted; tokens are always compared (numbers as numbers).", "type": "boolean"},
    "is_chronological": {"description": "Entities arrive in _updated order: the token may be committed after every batch.", "type": "boolean"},
    "page_size": {"description": "Sesam key, accepted; no effect in Ferry.", "type": "integer"},
    "if_source_empty": {"description": "With \"fail\", a full run that reads nothing fails instead of deletion-tracking every entity away.", "enum": ["accept", "fail"]}
  }
}`

const urlSystemSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "url system",
  "type": "object",
  "properties": {
    "_id": {"type": "string"},
    "type": {"const": "system:url"},
    "comment": {},
    "name": {"type": "string"},
    "description": {"type": "string"},
    "url_pattern": {"description": "The URL with %s where a source's url goes.", "type": "string"},
    "base_url": {"description": "The URL a source's url is appended to (when there is no url_pattern).", "type": "string"},
    "headers": {"description": "Headers sent with every request.", "type": "object", "additionalProperties": {"type": "string"}},
    "verify_ssl": {"description": "false skips TLS certificate checks (unsafe).", "type": "boolean"},
    "timeout": {"description": "Request timeout in seconds (default 30).", "type": "number", "exclusiveMinimum": 0},
    "authentication": {"description": "basic (username, password) or bearer (token); other kinds are refused as not supported.", "type": "string"},
    "username": {"description": "Basic authentication user.", "type": "string"},
    "password": {"description": "Basic authentication password; use $SECRET(name).", "type": "string"},
    "token": {"description": "Bearer token; use $SECRET(name).", "type": "string"},
    "metadata": {"type": "object"}
  }
}`

// URLSystem is a system:url: a base URL plus HTTP settings.
type URLSystem struct {
	ID      string
	Pattern string // url_pattern with %s, or base_url
	Headers map[string]string
	Client  *http.Client
	User    string
	Pass    string
	Token   string
}

func newURLSystem(b *engine.Build, cfg map[string]any) (any, error) {
	s := &URLSystem{Headers: map[string]string{}}
	s.ID, _ = cfg["_id"].(string)
	s.Pattern, _ = cfg["url_pattern"].(string)
	if s.Pattern == "" {
		s.Pattern, _ = cfg["base_url"].(string)
	}
	if s.Pattern == "" {
		return nil, engine.Fieldf("", "system:url needs url_pattern or base_url")
	}
	if hs, ok := cfg["headers"].(map[string]any); ok {
		for k, v := range hs {
			s.Headers[k], _ = v.(string)
		}
	}
	timeout := 30 * time.Second
	if f, ok := engine.AsFloat(cfg["timeout"]); ok {
		timeout = time.Duration(f * float64(time.Second))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if v, ok := cfg["verify_ssl"].(bool); ok && !v {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the config asked for it
	}
	s.Client = &http.Client{Timeout: timeout, Transport: tr}
	switch a, _ := cfg["authentication"].(string); strings.ToLower(a) {
	case "basic":
		s.User, _ = cfg["username"].(string)
		s.Pass, _ = cfg["password"].(string)
	case "bearer":
		s.Token, _ = cfg["token"].(string)
	case "":
	default:
		// Sesam's URL system also knows digest and ntlm; sending no
		// credentials instead would fail later with a confusing 401.
		return nil, engine.Fieldf("/authentication", "not supported: authentication %q (system:url supports basic with username/password and bearer with token; or set an Authorization header in headers)", a)
	}
	return s, nil
}

// Resolve joins a relative URL onto the system's pattern: "%s" in the
// pattern is replaced, otherwise the URL is appended. Absolute URLs are
// used as they are.
func (s *URLSystem) Resolve(u string) string {
	if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		return u
	}
	if strings.Contains(s.Pattern, "%s") {
		return strings.Replace(s.Pattern, "%s", u, 1)
	}
	return s.Pattern + u
}

// JSONSource reads a JSON array, NDJSON or concatenated JSON objects from
// a file or over HTTP(S). Without a system, url is a local file path
// (relative to the config file's directory) or a file:// URL; with a
// system:url it is resolved against the system's URL. With supports_since
// the stored token is sent as the "since" query parameter and the new
// token is the largest _updated seen. That token is only handed to the
// engine after the whole response was read, unless is_chronological says
// entities arrive in _updated order: committing a running maximum after an
// early batch would skip smaller _updated values of later batches if the
// run then failed.
type JSONSource struct {
	Path          string // local file, when not HTTP
	URL           string
	System        *URLSystem
	Headers       map[string]string
	Since         bool
	Chronological bool
	// Lines: the format is ndjson, one value per line.
	Lines bool
}

func newJSONSource(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	j := &JSONSource{Headers: map[string]string{}}
	raw, _ := cfg["url"].(string)
	j.Since, _ = cfg["supports_since"].(bool)
	j.Chronological, _ = cfg["is_chronological"].(bool)
	if f, _ := cfg["format"].(string); f == "ndjson" {
		j.Lines = true
	}
	if hs, ok := cfg["headers"].(map[string]any); ok {
		for k, v := range hs {
			j.Headers[k], _ = v.(string)
		}
	}
	if sysID, ok := cfg["system"].(string); ok && sysID != "" {
		sys, err := b.System(sysID)
		if err != nil {
			return nil, engine.Fieldf("/system", "%v", err)
		}
		us, ok := sys.(*URLSystem)
		if !ok {
			return nil, engine.Fieldf("/system", "system %q is not a system:url", sysID)
		}
		j.System = us
		j.URL = us.Resolve(raw)
		return j, nil
	}
	switch {
	case strings.HasPrefix(raw, "http://"), strings.HasPrefix(raw, "https://"):
		j.URL = raw
		j.System = &URLSystem{Client: &http.Client{Timeout: 30 * time.Second}}
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil {
			return nil, engine.Fieldf("/url", "%v", err)
		}
		j.Path = u.Path
	default:
		j.Path = raw
		if !filepath.IsAbs(raw) && b.Config != nil {
			if comp := b.Config.Pipe(b.Pipe); comp != nil && comp.File != "" {
				j.Path = filepath.Join(filepath.Dir(comp.File), raw)
			}
		}
	}
	return j, nil
}

// SupportsSince reports whether runs continue from a token.
func (j *JSONSource) SupportsSince() bool { return j.Since }

func (j *JSONSource) where() string {
	if j.Path != "" {
		return j.Path
	}
	return j.URL
}

// Open starts a read.
func (j *JSONSource) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	var body io.ReadCloser
	if j.Path != "" {
		f, err := os.Open(j.Path)
		if err != nil {
			return nil, fmt.Errorf("json source: %w", err)
		}
		body = f
	} else {
		u := j.URL
		if j.Since && req.Since != "" {
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			u += sep + "since=" + url.QueryEscape(req.Since)
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("json source: %w", err)
		}
		for k, v := range j.System.Headers {
			hr.Header.Set(k, v)
		}
		for k, v := range j.Headers {
			hr.Header.Set(k, v)
		}
		if j.System.User != "" {
			hr.SetBasicAuth(j.System.User, j.System.Pass)
		} else if j.System.Token != "" {
			hr.Header.Set("Authorization", "Bearer "+j.System.Token)
		}
		resp, err := j.System.Client.Do(hr)
		if err != nil {
			return nil, fmt.Errorf("json source: GET %s: %w", redact(u), err)
		}
		if resp.StatusCode/100 != 2 {
			snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			resp.Body.Close()
			return nil, fmt.Errorf("json source: GET %s: HTTP %d: %s", redact(u), resp.StatusCode, strings.TrimSpace(string(snippet)))
		}
		body = resp.Body
	}
	stream := newValueStream(body)
	if j.Lines {
		stream = newLineStream(body)
	}
	return &jsonReader{src: j, body: body, stream: stream, size: max(req.BatchSize, 1), since: req.Since, dec: engine.NewDecoder()}, nil
}

// redact drops the query string, which may carry credentials.
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?..."
	}
	return u
}

type jsonReader struct {
	src    *JSONSource
	body   io.ReadCloser
	stream *valueStream
	size   int
	since  string
	// maxUpdated is the largest _updated seen (supports_since).
	maxUpdated since.Max
	n          int
	dec        *engine.Decoder
	// lastRaw is how many bytes the last raw batch held: the next one's
	// buffer is sized from it.
	lastRaw int
	// final is set once the token was handed over after the last batch.
	final bool
}

// RawOK: raw batches are possible when the token does not depend on the
// entities' _updated.
func (r *jsonReader) RawOK() bool { return !r.src.Since }

// NextRaw yields the next batch as JSON text (copies: the stream reuses its
// buffer).
func (r *jsonReader) NextRaw(ctx context.Context) (engine.RawBatch, error) {
	if err := ctx.Err(); err != nil {
		return engine.RawBatch{}, err
	}
	vals := make([][]byte, 0, r.size)
	first := r.n + 1
	var arena []byte
	var lines []int // in line mode, each value's line
	if r.stream.lines {
		lines = make([]int, 0, r.size)
	}
	for len(vals) < r.size {
		raw, err := r.stream.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return engine.RawBatch{}, fmt.Errorf("%s: %w", r.src.where(), err)
		}
		r.n++
		if cap(arena)-len(arena) < len(raw) {
			// A batch's text in one buffer, sized after the last
			// batch (a fixed 64 KiB was twice what 100 entities of
			// 300 bytes need, and the heap held it twice as long).
			arena = make([]byte, 0, max(len(raw), r.lastRaw+r.lastRaw/8, 4<<10))
		}
		start := len(arena)
		arena = append(arena, raw...)
		vals = append(vals, arena[start:len(arena):len(arena)])
		if lines != nil {
			lines = append(lines, r.stream.line)
		}
	}
	if len(vals) == 0 {
		return engine.RawBatch{}, engine.EOF
	}
	r.lastRaw = 0
	for _, v := range vals {
		r.lastRaw += len(v)
	}
	where := r.src.where()
	if lines != nil {
		return engine.RawBatch{Values: vals, Locate: func(i int) string { return fmt.Sprintf("%s: line %d", where, lines[i]) }}, nil
	}
	return engine.RawBatch{Values: vals, Locate: func(i int) string { return fmt.Sprintf("%s: entity %d", where, first+i) }}, nil
}

func (r *jsonReader) Next(ctx context.Context) (engine.Batch, error) {
	if err := ctx.Err(); err != nil {
		return engine.Batch{}, err
	}
	ents := make([]engine.Entity, 0, r.size)
	for len(ents) < r.size {
		raw, err := r.stream.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return engine.Batch{}, fmt.Errorf("%s: %w", r.src.where(), err)
		}
		r.n++
		e, err := r.dec.DecodeEntity(raw)
		if err != nil {
			if r.stream.lines {
				return engine.Batch{}, fmt.Errorf("%s: line %d: %w", r.src.where(), r.stream.line, err)
			}
			return engine.Batch{}, fmt.Errorf("%s: entity %d: %w", r.src.where(), r.n, err)
		}
		if r.src.Since {
			if u, ok := e["_updated"]; ok {
				r.maxUpdated.Offer(tokenText(u))
			}
		}
		ents = append(ents, e)
	}
	maxSince, seen := r.maxUpdated.Text()
	if len(ents) == 0 {
		if !r.src.Chronological && seen && !r.final {
			// The whole response was read: the maximum is now safe.
			r.final = true
			return engine.Batch{Since: maxSince}, nil
		}
		return engine.Batch{}, engine.EOF
	}
	b := engine.Batch{Entities: ents}
	if r.src.Chronological && seen {
		b.Since = maxSince
	}
	return b, nil
}

func (r *jsonReader) Close() error { return r.body.Close() }
