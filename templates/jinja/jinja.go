package jinja

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/nodes"
)

// Context holds the variables a template may read, as Ferry JSON values
// (nil, bool, json.Number, string, []any, map[string]any; other Go scalars,
// map[string]string and []string are accepted too). The REST engine fills
// it with the names SPEC §d lists: entity, source_entity, properties, since,
// url, page, page_size, is_first_page, body, headers, request_headers,
// response_headers, request_params, previous_body, previous_params,
// previous_headers, previous_request_headers, and, for id_expression and
// updated_expression, every field of the item as a top-level name. Header
// maps are looked up by exact key ("X-Sesam-Page"), so the caller should
// pass one string per name (map[string]any or map[string]string, not
// http.Header) under the names as configured or in canonical MIME form. A name that is
// absent is undefined; a name present with a nil value is None (defined).
//
// Render never modifies the Context or the values in it.
type Context map[string]any

// Options configure the functions a template can call. The zero value is
// usable: secret() then fails, now() reads the wall clock.
type Options struct {
	// Secret resolves secret(name). Its result is scrubbed from every error
	// message the render produces; its error is wrapped by the render error.
	Secret func(name string) (string, error)
	// Now is the clock behind now(); nil means time.Now. The result is
	// converted to UTC.
	Now func() time.Time
	// MaxOutput caps the rendered text in bytes; 0 means 8 MiB.
	MaxOutput int
}

// ErrUndefined is matched (errors.Is) by a render error caused by an
// undefined name, a missing map key or attribute, or an attribute of None.
var ErrUndefined = errors.New("undefined")

// Error is a compile or render failure of one template. Its message names
// the template text; it never contains a value returned by secret().
type Error struct {
	// Template is the template source text.
	Template string
	// Op is "compile" or "render".
	Op string
	// Msg describes the failure.
	Msg       string
	undefined bool
	cause     error
}

// Error implements error.
func (e *Error) Error() string {
	kind := ""
	if e.undefined {
		kind = "undefined: "
	}
	return fmt.Sprintf("jinja: %s %q: %s%s", e.Op, e.Template, kind, e.Msg)
}

// Is reports whether target is ErrUndefined and the error is an undefined
// one.
func (e *Error) Is(target error) bool { return target == ErrUndefined && e.undefined }

// Unwrap returns the secret resolver's error when that caused the failure.
func (e *Error) Unwrap() error { return e.cause }

// Template is a compiled runtime template. It is immutable and safe for
// concurrent use.
type Template struct {
	src      string
	constant bool
	opts     Options
	tpl      *exec.Template
	cfg      *config.Config
	env      *exec.Environment
	single   nodes.Expression // set when the template is exactly one `{{ expr }}`
	names    []string         // top-level names the template reads, sorted
	// members and whole: see Members.
	members map[string][]string
	whole   map[string]bool
}

// Compile parses src with the zero Options. See CompileWith.
func Compile(src string) (*Template, error) {
	return CompileWith(src, Options{})
}

// CompileWith parses src once. A string without "{{", "{%" or "{#" is a
// constant: it is returned as is by Render and never reaches the engine.
// Unknown filters and tests, and control structures other than if/raw, are
// compile errors.
func CompileWith(src string, opts Options) (t *Template, err error) {
	t = &Template{src: src, opts: opts}
	if !strings.Contains(src, "{{") && !strings.Contains(src, "{%") && !strings.Contains(src, "{#") {
		t.constant = true
		return t, nil
	}
	if off, bad := lexerHazard(src); bad {
		return nil, &Error{Template: src, Op: "compile", Msg: fmt.Sprintf("a number followed by '.' and a non-ASCII character at byte %d is not supported inside a tag (put a space after the number, or quote the text)", off)}
	}
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, &Error{Template: src, Op: "compile", Msg: fmt.Sprintf("engine panic: %v", r)}
		}
	}()
	sets := sharedSets()
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	t.env = &exec.Environment{
		Filters:           sets.filters,
		Tests:             sets.tests,
		ControlStructures: sets.control,
		Methods:           sets.methods,
		Context: exec.NewContext(map[string]any{
			"now":                  func() datetime { return datetime{now().UTC()} },
			"b64encode":            b64encode,
			"hmacsha256digest":     hmacSHA256Digest,
			"hmacsha256digest_b64": hmacSHA256DigestB64,
		}),
	}
	loader, err := loaders.NewShiftedLoader("template", strings.NewReader(src), loaders.MustNewMemoryLoader(map[string]string{}))
	if err != nil {
		return nil, &Error{Template: src, Op: "compile", Msg: err.Error()}
	}
	t.cfg = newConfig()
	t.tpl, err = exec.NewTemplate("template", t.cfg, loader, t.env)
	if err != nil {
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, src+"': "); ok {
			msg = rest
		}
		return nil, &Error{Template: src, Op: "compile", Msg: msg}
	}
	root := t.tpl.Root()
	a := &analyser{sets: sets, names: map[string]bool{}, seen: map[nodes.Node]nodes.Node{},
		members: map[string]map[string]bool{}, whole: map[string]bool{}, viaMember: map[*nodes.Name]bool{}}
	a.node(root)
	if a.err != nil {
		return nil, &Error{Template: src, Op: "compile", Msg: a.err.Error()}
	}
	for n := range a.names {
		t.names = append(t.names, n)
	}
	slices.Sort(t.names)
	t.whole, t.members = a.whole, make(map[string][]string, len(a.members))
	for n, ks := range a.members {
		t.members[n] = slices.Sorted(maps.Keys(ks))
	}
	if len(root.Nodes) == 1 {
		if out, ok := root.Nodes[0].(*nodes.Output); ok && out.Condition == nil {
			t.single = out.Expression
		}
	}
	return t, nil
}

// MustCompile is Compile for templates written in Go source; it panics on
// error.
func MustCompile(src string) *Template {
	t, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return t
}

// Source returns the template text.
func (t *Template) Source() string { return t.src }

// IsConstant reports whether the template has no Jinja markup.
func (t *Template) IsConstant() bool { return t.constant }

// Uses reports whether the template reads the top-level name (for example
// "since": SPEC §d, a url that uses since disables the automatic param).
func (t *Template) Uses(name string) bool {
	_, ok := slices.BinarySearch(t.names, name)
	return ok
}

// Members reports how the template reads the top-level name: keys are
// the constant attributes and keys it reads of it (name.key,
// name['key']), sorted, and whole is true when it also reads the name in
// any other way (its value, a filter or test of it, a method, a computed
// key or an index, or an attribute such as items that may be a method of
// a mapping). A name the template does not read gives nil, false.
func (t *Template) Members(name string) (keys []string, whole bool) {
	if !t.Uses(name) {
		return nil, false
	}
	return slices.Clone(t.members[name]), t.whole[name]
}

// Names returns the top-level names the template reads, sorted.
func (t *Template) Names() []string { return slices.Clone(t.names) }

// Render evaluates the template against ctx and returns the text.
func (t *Template) Render(ctx Context) (string, error) {
	if t.constant {
		return t.src, nil
	}
	v, s, err := t.run(ctx)
	if err != nil {
		return "", err
	}
	if v != nil {
		return v.String(), nil
	}
	return s, nil
}

// run renders the template. A single-expression template is evaluated
// directly (no renderer) and its value returned; otherwise the text.
func (t *Template) run(ctx Context) (val *exec.Value, text string, err error) {
	st := &renderState{resolve: t.opts.Secret}
	data := make(map[string]any, len(t.names))
	for _, name := range t.names {
		if v, ok := ctx[name]; ok {
			data[name] = toEngine(v)
		} else if name == "secret" {
			data[name] = st.secret
		}
	}
	limit := t.opts.MaxOutput
	if limit <= 0 {
		limit = maxValueBytes
	}
	defer func() {
		if r := recover(); r != nil {
			val, text, err = nil, "", t.renderError(fmt.Errorf("engine panic: %v", r), st)
		}
	}()
	if name, ok := t.single.(*nodes.Name); ok && name.Name.Val != "secret" {
		// `{{ name }}` (most id_expression/updated_expression strings):
		// a context lookup, no evaluator. Same result as the engine.
		v, ok := data[name.Name.Val]
		if !ok {
			if _, global := t.env.Context.Get(name.Name.Val); !global {
				return nil, "", t.renderError(fmt.Errorf("Unable to evaluate name %q", name.Name.Val), st)
			}
		} else {
			val := exec.ToValue(v)
			if s := val.String(); len(s) > limit {
				return nil, "", t.renderError(fmt.Errorf("output longer than %d bytes", limit), st)
			}
			return val, "", nil
		}
	}
	if t.single != nil {
		e := &exec.Evaluator{
			Config: t.cfg,
			Environment: &exec.Environment{
				Filters:           t.env.Filters,
				Tests:             t.env.Tests,
				ControlStructures: t.env.ControlStructures,
				Methods:           t.env.Methods,
				Context:           t.env.Context.Inherit().Update(exec.NewContext(data)),
			},
		}
		v := e.Eval(t.single)
		if v.IsError() {
			return nil, "", t.renderError(v, st)
		}
		if s := v.String(); len(s) > limit {
			return nil, "", t.renderError(fmt.Errorf("output longer than %d bytes", limit), st)
		}
		return v, "", nil
	}
	var b bytes.Buffer
	w := &limitWriter{w: &b, n: limit}
	if err := t.tpl.Execute(w, exec.NewContext(data)); err != nil {
		return nil, "", t.renderError(err, st)
	}
	return nil, b.String(), nil
}

// undefinedRE matches gonja's messages for undefined names, missing keys
// and attributes, and attribute access on None.
var undefinedRE = regexp.MustCompile(`Unable to evaluate name "|(attribute|item) .+ not found|argument is undefined|Can't use getattr on None|Can't use Getitem on None`)

func (t *Template) renderError(err error, st *renderState) *Error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "unable to execute template: ")
	e := &Error{Template: t.src, Op: "render", Msg: st.scrub(msg), cause: st.err}
	e.undefined = st.err == nil && undefinedRE.MatchString(msg)
	return e
}

// limitWriter fails once more than n bytes have been written.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, fmt.Errorf("output longer than the %d-byte limit", l.n)
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// Markers (SPEC §d): a rendered value containing MarkSkip drops its key; a
// value ending in MarkJSON is parsed as JSON after the marker is removed.
const (
	MarkSkip = "sesam:markskip"
	MarkJSON = "sesam:markjson"
)

// RenderValue renders t for a payload, params or headers value (SPEC §d):
//
//   - output containing "sesam:markskip" ⇒ skip is true (drop the key);
//   - output ending in "sesam:markjson" ⇒ the marker is stripped and the
//     rest parsed as JSON (numbers as json.Number);
//   - a template that is exactly one `{{ expr }}` whose value is a dict or a
//     list yields that value as Ferry JSON (Ferry extension: Jinja2 would
//     send its Python repr, which no API accepts — e.g. superoffice's
//     `"QuoteLine": "{{ entity['payload'] }}"`);
//   - otherwise the rendered string.
func RenderValue(ctx Context, t *Template) (value any, skip bool, err error) {
	if t.constant {
		return finishValue(t, t.src)
	}
	v, s, err := t.run(ctx)
	if err != nil {
		return nil, false, err
	}
	if v != nil {
		if v.IsDict() || v.IsList() {
			out, err := toFerry(v)
			if err != nil {
				return nil, false, &Error{Template: t.src, Op: "render", Msg: err.Error()}
			}
			return out, false, nil
		}
		s = v.String()
	}
	return finishValue(t, s)
}

func finishValue(t *Template, s string) (any, bool, error) {
	if strings.Contains(s, MarkSkip) {
		return nil, true, nil
	}
	body, ok := strings.CutSuffix(s, MarkJSON)
	if !ok {
		return s, false, nil
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false, &Error{Template: t.src, Op: "render", Msg: fmt.Sprintf("%s: output is not JSON: %v", MarkJSON, err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, &Error{Template: t.src, Op: "render", Msg: MarkJSON + ": output has data after the JSON value"}
	}
	return v, false, nil
}

// Set compiles each distinct template string once and keeps it, so an
// operation or pipe compiles its strings a single time. It is safe for
// concurrent use. Compile errors are cached too.
type Set struct {
	opts Options
	mu   sync.RWMutex
	m    map[string]setEntry
}

type setEntry struct {
	t   *Template
	err error
}

// NewSet returns an empty Set whose templates use opts.
func NewSet(opts Options) *Set {
	return &Set{opts: opts, m: map[string]setEntry{}}
}

// Compile returns the compiled template for src, compiling it on first use.
func (s *Set) Compile(src string) (*Template, error) {
	s.mu.RLock()
	e, ok := s.m[src]
	s.mu.RUnlock()
	if ok {
		return e.t, e.err
	}
	t, err := CompileWith(src, s.opts)
	s.mu.Lock()
	s.m[src] = setEntry{t, err}
	s.mu.Unlock()
	return t, err
}

// Len returns the number of distinct strings compiled so far.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// Render compiles (once) and renders src.
func (s *Set) Render(src string, ctx Context) (string, error) {
	t, err := s.Compile(src)
	if err != nil {
		return "", err
	}
	return t.Render(ctx)
}

// RenderValue compiles (once) src and applies the package RenderValue.
func (s *Set) RenderValue(src string, ctx Context) (any, bool, error) {
	t, err := s.Compile(src)
	if err != nil {
		return nil, false, err
	}
	return RenderValue(ctx, t)
}

// RenderTree renders a JSON config value such as an operation's payload,
// params or headers: every string (map keys included, rendered as text) is
// a template; string values go through RenderValue, and a skipped value
// drops its map key or list element. A skipped root returns skip true.
// Other values are returned unchanged; the input is not modified.
func (s *Set) RenderTree(ctx Context, v any) (out any, skip bool, err error) {
	switch x := v.(type) {
	case string:
		return s.RenderValue(x, ctx)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			rk, err := s.Render(k, ctx)
			if err != nil {
				return nil, false, err
			}
			rv, skip, err := s.RenderTree(ctx, e)
			if err != nil {
				return nil, false, fmt.Errorf("key %q: %w", k, err)
			}
			if !skip {
				m[rk] = rv
			}
		}
		return m, false, nil
	case []any:
		l := make([]any, 0, len(x))
		for i, e := range x {
			rv, skip, err := s.RenderTree(ctx, e)
			if err != nil {
				return nil, false, fmt.Errorf("index %d: %w", i, err)
			}
			if !skip {
				l = append(l, rv)
			}
		}
		return l, false, nil
	}
	return v, false, nil
}

// lexerHazard finds, inside a {{ }} or {% %} tag (or an unclosed one), a
// digit directly followed by "." and a non-ASCII byte ("0.é", "1.5.é"):
// gonja v2.9.1's lexer, when it reads such a number, backs up by the width
// of the peeked multi-byte character instead of the dot's and then loops
// forever (found by FuzzCompileRender). Quoted strings are skipped; an
// identifier ending in a digit followed by a non-ASCII attribute name
// (x1.é) is refused too, which keeps the check simple and safe.
func lexerHazard(src string) (int, bool) {
	for i := 0; i+1 < len(src); i++ {
		if src[i] != '{' || (src[i+1] != '{' && src[i+1] != '%') {
			continue
		}
		closer := "}}"
		if src[i+1] == '%' {
			closer = "%}"
		}
		end := strings.Index(src[i+2:], closer)
		if end < 0 {
			end = len(src)
		} else {
			end += i + 2
		}
		for j := i + 2; j < end; j++ {
			switch c := src[j]; {
			case c == '"' || c == '\'':
				for j++; j < end && src[j] != c; j++ {
					if src[j] == '\\' {
						j++
					}
				}
			case c >= '0' && c <= '9' && j+2 < len(src) && src[j+1] == '.' && src[j+2] >= 0x80:
				return j + 1, true
			}
		}
		i = end
	}
	return 0, false
}
