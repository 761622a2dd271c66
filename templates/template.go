package templates

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/flosch/pongo2/v6"
)

// Error is a template error with its position. Line and Col are 1-based
// (Col counts characters); for a template that fails to render they point
// at the expansion tag that failed.
type Error struct {
	File     string // template file, as named in the manifest
	Line     int
	Col      int
	Datatype string // the datatype being expanded, when known
	Err      error
}

// Error formats the error as "file:line:col: datatype \"d\": message".
func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line) + ":" + strconv.Itoa(e.Col)
	}
	if e.Datatype != "" {
		return fmt.Sprintf("%s: datatype %q: %v", loc, e.Datatype, e.Err)
	}
	return fmt.Sprintf("%s: %v", loc, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

type nodeKind uint8

const (
	nText nodeKind = iota // literal text
	nOut                  // {{@ expr @}}
	nCond                 // if/elif condition
	nIter                 // for iterable (with its optional "if" filter)
	nBind                 // loop target or set assignment
)

// node is one entry of a compiled template's table; the pongo2 template
// refers to nodes by index.
type node struct {
	kind    nodeKind
	text    string
	x       expr
	cond    expr     // nIter: "for x in y if cond"
	targets []string // nIter, nBind
	loopVar string   // nBind from a loop: the pongo2 loop variable
	off     int
}

// Template is a compiled connector template. It is immutable and safe for
// concurrent use.
type Template struct {
	name  string
	src   string // normalised source, for positions
	nodes []node
	bound map[string]bool // names that set/for may bind at render time
	p2    *pongo2.Template
	gen   []int // start column (0-based) in the pongo2 source of each generated tag
	genN  []int // node (or -1) of each generated tag

	maxSteps int // render budget in tag evaluations
}

// Name returns the template's file name.
func (t *Template) Name() string { return t.name }

// denyLoader keeps pongo2 from reading any file: generated templates never
// include or extend.
type denyLoader struct{}

func (denyLoader) Abs(_, name string) string { return name }
func (denyLoader) Get(name string) (io.Reader, error) {
	return nil, fmt.Errorf("templates: loading %q is not allowed", name)
}

const (
	fnOut  = "__ferry_o"
	fnVal  = "__ferry_v"
	fnBind = "__ferry_b"
)

// Compile compiles a template source. name is used in error messages.
func Compile(name, src string) (t *Template, err error) {
	t = &Template{name: name, src: normalizeSource(src), bound: map[string]bool{"loop": true}, maxSteps: defaultMaxSteps}
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, &Error{File: name, Err: fmt.Errorf("internal template error: %v", r)}
		}
	}()
	if err := t.compile(); err != nil {
		return nil, t.posErr(err)
	}
	return t, nil
}

type block struct {
	kind    string
	off     int
	sawElse bool
}

func (t *Template) compile() error {
	items, err := lexTemplate(t.src)
	if err != nil {
		return err
	}
	var gen strings.Builder
	emit := func(n int, tag string) {
		t.gen = append(t.gen, gen.Len())
		t.genN = append(t.genN, n)
		gen.WriteString(tag)
	}
	addNode := func(n node) int {
		t.nodes = append(t.nodes, n)
		return len(t.nodes) - 1
	}
	var stack []block
	loops := 0
	for _, it := range items {
		switch it.kind {
		case itemText:
			n := addNode(node{kind: nText, text: it.text, off: it.off})
			emit(n, fmt.Sprintf("{{ %s(%d) }}", fnOut, n))
		case itemOutput:
			x, err := parseOutput(it.toks)
			if err != nil {
				return err
			}
			if err := checkExpr(x); err != nil {
				return err
			}
			n := addNode(node{kind: nOut, x: x, off: it.off})
			emit(n, fmt.Sprintf("{{ %s(%d) }}", fnOut, n))
		case itemStmt:
			s, err := parseStmt(it.toks)
			if err != nil {
				return err
			}
			for _, x := range []expr{s.x, s.cond} {
				if x != nil {
					if err := checkExpr(x); err != nil {
						return err
					}
				}
			}
			top := func(kinds ...string) *block {
				if len(stack) == 0 || !contains(kinds, stack[len(stack)-1].kind) {
					return nil
				}
				return &stack[len(stack)-1]
			}
			switch s.kind {
			case "if":
				stack = append(stack, block{kind: "if", off: it.off})
				n := addNode(node{kind: nCond, x: s.x, off: it.off})
				emit(n, fmt.Sprintf("{%% if %s(%d) %%}", fnVal, n))
			case "elif":
				b := top("if")
				if b == nil || b.sawElse {
					return errAt(it.off, "unexpected 'elif'")
				}
				n := addNode(node{kind: nCond, x: s.x, off: it.off})
				emit(n, fmt.Sprintf("{%% elif %s(%d) %%}", fnVal, n))
			case "else":
				b := top("if", "for")
				if b == nil || b.sawElse {
					return errAt(it.off, "unexpected 'else'")
				}
				b.sawElse = true
				if b.kind == "if" {
					emit(-1, "{% else %}")
				} else {
					emit(-1, "{% empty %}")
				}
			case "endif", "endfor":
				if top(strings.TrimPrefix(s.kind, "end")) == nil {
					return errAt(it.off, "unexpected '%s'%s", s.kind, expecting(stack))
				}
				stack = stack[:len(stack)-1]
				emit(-1, "{% "+s.kind+" %}")
			case "for":
				stack = append(stack, block{kind: "for", off: it.off})
				loops++
				loopVar := "__ferry_i" + strconv.Itoa(loops)
				n := addNode(node{kind: nIter, x: s.x, cond: s.cond, targets: s.targets, off: it.off})
				emit(n, fmt.Sprintf("{%% for %s in %s(%d) %%}", loopVar, fnVal, n))
				b := addNode(node{kind: nBind, targets: s.targets, loopVar: loopVar, off: it.off})
				emit(b, fmt.Sprintf("{{ %s(%d) }}", fnBind, b))
				for _, name := range s.targets {
					t.bound[name] = true
				}
			case "set":
				n := addNode(node{kind: nBind, x: s.x, targets: s.targets, off: it.off})
				emit(n, fmt.Sprintf("{{ %s(%d) }}", fnBind, n))
				for _, name := range s.targets {
					t.bound[name] = true
				}
			}
		}
	}
	if len(stack) > 0 {
		b := stack[len(stack)-1]
		return errAt(b.off, "'%s' block opened here is never closed (expected 'end%s' before the end of the template)", b.kind, b.kind)
	}
	set := pongo2.NewSet("ferry-templates:"+t.name, denyLoader{})
	p2, err := set.FromString(gen.String())
	if err != nil {
		return t.pongoErr(err)
	}
	t.p2 = p2
	return nil
}

func expecting(stack []block) string {
	if len(stack) == 0 {
		return ""
	}
	return fmt.Sprintf(" (the innermost open block is '%s', expected 'end%s')", stack[len(stack)-1].kind, stack[len(stack)-1].kind)
}

// checkExpr rejects unknown filters and tests at compile time, as Jinja2 does.
func checkExpr(e expr) error {
	var err error
	var walk func(e expr)
	walk = func(e expr) {
		if e == nil || err != nil {
			return
		}
		switch x := e.(type) {
		case *listExpr:
			for _, it := range x.items {
				walk(it)
			}
		case *dictExpr:
			for i := range x.keys {
				walk(x.keys[i])
				walk(x.vals[i])
			}
		case *attrExpr:
			walk(x.x)
		case *itemExpr:
			walk(x.x)
			walk(x.key)
		case *callExpr:
			walk(x.fn)
			for _, a := range x.args {
				walk(a)
			}
			for _, k := range x.kwargs {
				walk(k.val)
			}
		case *filterExpr:
			if _, ok := filters[x.name]; !ok {
				err = errAt(x.off, "no filter named '%s'", x.name)
				return
			}
			walk(x.x)
			for _, a := range x.args {
				walk(a)
			}
			for _, k := range x.kwargs {
				walk(k.val)
			}
		case *testExpr:
			if !knownTests[x.name] {
				err = errAt(x.off, "no test named '%s'", x.name)
				return
			}
			walk(x.x)
			for _, a := range x.args {
				walk(a)
			}
		case *unaryExpr:
			walk(x.x)
		case *binExpr:
			walk(x.l)
			walk(x.r)
		case *cmpExpr:
			walk(x.first)
			for _, r := range x.rest {
				walk(r)
			}
		case *condExpr:
			walk(x.test)
			walk(x.then)
			walk(x.els)
		}
	}
	walk(e)
	return err
}

// posErr turns an error carrying a source offset into an *Error.
func (t *Template) posErr(err error) error {
	var te *Error
	if errors.As(err, &te) {
		return err
	}
	var pe *posError
	var ee *evalError
	off := -1
	switch {
	case errors.As(err, &pe):
		off = pe.off
	case errors.As(err, &ee):
		off, err = ee.off, ee.err
	}
	e := &Error{File: t.name, Err: err}
	if off >= 0 {
		e.Line, e.Col = lineCol(t.src, off)
	}
	return e
}

// pongoErr maps a pongo2 error on the generated source back to the tag it
// came from.
func (t *Template) pongoErr(err error) error {
	var pe *pongo2.Error
	if errors.As(err, &pe) && pe.Column > 0 {
		col := pe.Column - 1
		for i := len(t.gen) - 1; i >= 0; i-- {
			if t.gen[i] <= col {
				if n := t.genN[i]; n >= 0 {
					return errAt(t.nodes[n].off, "%v", pe.OrigError)
				}
				break
			}
		}
	}
	return fmt.Errorf("internal template error: %w", err)
}

// renderState is the per-render state shared by the context functions.
// Every byte of output goes through out or bind, so the state also records
// which template position produced which part of the output.
type renderState struct {
	t      *Template
	vars   map[string]any
	err    error
	outLen int
	steps  int
	segs   []segment
}

// segment says that output from byte outOff on came from the template at
// byte srcOff: verbatim when text is set, else from the tag at srcOff.
type segment struct {
	outOff, srcOff int
	text           bool
}

func (st *renderState) record(srcOff int, text bool, s string) {
	st.segs = append(st.segs, segment{outOff: st.outLen, srcOff: srcOff, text: text})
	st.outLen += len(s)
}

// Output is a rendered template together with the map from output
// positions back to template positions.
type Output struct {
	Text string
	t    *Template
	segs []segment
}

// SourcePos returns the template line and column (1-based) that produced
// the output byte at off: the same character for literal text, the opening
// delimiter of the tag for expression output.
func (o *Output) SourcePos(off int) (line, col int) {
	i := sort.Search(len(o.segs), func(i int) bool { return o.segs[i].outOff > off }) - 1
	if i < 0 {
		return lineCol(o.t.src, 0)
	}
	sg := o.segs[i]
	if sg.text {
		return lineCol(o.t.src, sg.srcOff+off-sg.outOff)
	}
	return lineCol(o.t.src, sg.srcOff)
}

// ctxScope resolves names from pongo2's execution context (loop targets and
// set variables bound by this package) and then from the render variables.
type ctxScope struct {
	st *renderState
	ec *pongo2.ExecutionContext
}

func (s ctxScope) lookup(name string) (any, bool) {
	if s.st.t.bound[name] {
		if v, ok := s.ec.Private[name]; ok {
			if pv, ok := v.(*pongo2.Value); ok {
				return pv.Interface(), true
			}
			return v, true
		}
	}
	v, ok := s.st.vars[name]
	return v, ok
}

func (st *renderState) fail(off int, err error) error {
	if st.err == nil {
		var ee *evalError
		if !errors.As(err, &ee) {
			err = &evalError{off: off, err: err}
		}
		st.err = st.t.posErr(err)
	}
	return st.err
}

// Render budget: a template whose loops run away fails instead of hanging
// the expansion or exhausting memory.
const (
	defaultMaxSteps = 1_000_000
	maxOutput       = 256 << 20
)

func (st *renderState) node(n int) (*node, error) {
	if n < 0 || n >= len(st.t.nodes) {
		return nil, fmt.Errorf("internal template error: node %d out of range", n)
	}
	st.steps++
	if st.steps > st.t.maxSteps || st.outLen > maxOutput {
		return nil, st.fail(st.t.nodes[n].off, fmt.Errorf("template too expensive to render (more than %d tag evaluations or 256 MiB of output)", st.t.maxSteps))
	}
	return &st.t.nodes[n], nil
}

func (st *renderState) out(ec *pongo2.ExecutionContext, n int) (*pongo2.Value, error) {
	nd, err := st.node(n)
	if err != nil {
		return nil, err
	}
	if nd.kind == nText {
		st.record(nd.off, true, nd.text)
		return pongo2.AsSafeValue(nd.text), nil
	}
	v, err := eval(nd.x, ctxScope{st, ec})
	if err != nil {
		return nil, st.fail(nd.off, err)
	}
	s := pyStr(v)
	st.record(nd.off, false, s)
	return pongo2.AsSafeValue(s), nil
}

func (st *renderState) val(ec *pongo2.ExecutionContext, n int) (any, error) {
	nd, err := st.node(n)
	if err != nil {
		return nil, err
	}
	sc := ctxScope{st, ec}
	v, err := eval(nd.x, sc)
	if err != nil {
		return nil, st.fail(nd.off, err)
	}
	if nd.kind == nCond {
		return truthy(v), nil
	}
	items, err := iterate(v)
	if err != nil {
		return nil, st.fail(nd.x.pos(), err)
	}
	if nd.cond == nil {
		return items, nil
	}
	kept := items[:0:0]
	for _, it := range items {
		local := &localScope{vars: map[string]any{}, parent: sc}
		if err := assign(local.vars, nd.targets, it); err != nil {
			return nil, st.fail(nd.off, err)
		}
		c, err := eval(nd.cond, local)
		if err != nil {
			return nil, st.fail(nd.off, err)
		}
		if truthy(c) {
			kept = append(kept, it)
		}
	}
	return kept, nil
}

func (st *renderState) bind(ec *pongo2.ExecutionContext, n int) (*pongo2.Value, error) {
	nd, err := st.node(n)
	if err != nil {
		return nil, err
	}
	var v any
	if nd.loopVar != "" {
		if pv, ok := ec.Private[nd.loopVar].(*pongo2.Value); ok {
			v = fromGo(pv.Interface())
		}
		ec.Private["loop"] = loopInfo(ec.Private["forloop"])
	} else if v, err = eval(nd.x, ctxScope{st, ec}); err != nil {
		return nil, st.fail(nd.off, err)
	}
	vars := map[string]any{}
	if err := assign(vars, nd.targets, v); err != nil {
		return nil, st.fail(nd.off, err)
	}
	for k, x := range vars {
		ec.Private[k] = x
	}
	return pongo2.AsSafeValue(""), nil
}

// assign binds one value to the targets, unpacking when there are several.
func assign(vars map[string]any, targets []string, v any) error {
	if len(targets) == 1 {
		vars[targets[0]] = v
		return nil
	}
	items, err := iterate(v)
	if err != nil {
		return fmt.Errorf("cannot unpack non-iterable %s object", typeName(v))
	}
	if len(items) != len(targets) {
		return fmt.Errorf("cannot unpack %d values into %d variables", len(items), len(targets))
	}
	for i, name := range targets {
		vars[name] = items[i]
	}
	return nil
}

// loopInfo builds Jinja's loop variable from pongo2's forloop.
func loopInfo(forloop any) *loopContext {
	rv := reflect.ValueOf(forloop)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return &loopContext{length: 1, depth: 1}
	}
	rv = rv.Elem()
	// loop.depth counts recursive loops only, which are not supported, so
	// it is always 1 (as in Jinja2 for nested non-recursive loops).
	return &loopContext{
		index:  int(rv.FieldByName("Counter0").Int()),
		length: int(rv.FieldByName("Counter0").Int() + rv.FieldByName("Revcounter").Int()),
		depth:  1,
	}
}

// Render renders the template with the given variables (values decoded
// from JSON with UseNumber, or Go scalars, slices and string-keyed maps).
// Errors are *Error values naming the file, line and column of the failing
// tag.
func (t *Template) Render(vars map[string]any) (string, error) {
	o, err := t.RenderOutput(vars)
	if err != nil {
		return "", err
	}
	return o.Text, nil
}

// RenderOutput is Render that also returns the map from output positions
// back to the template, for callers that validate the output (JSON) and
// want to report where a problem came from.
func (t *Template) RenderOutput(vars map[string]any) (o *Output, err error) {
	st := &renderState{t: t, vars: vars}
	defer func() {
		if r := recover(); r != nil {
			o, err = nil, &Error{File: t.name, Err: fmt.Errorf("internal template error: %v", r)}
		}
	}()
	ctx := pongo2.Context{fnOut: st.out, fnVal: st.val, fnBind: st.bind}
	s, perr := t.p2.Execute(ctx)
	if st.err != nil {
		return nil, st.err
	}
	if perr != nil {
		return nil, &Error{File: t.name, Err: fmt.Errorf("internal template error: %w", perr)}
	}
	return &Output{Text: s, t: t, segs: st.segs}, nil
}

// Set loads and compiles the templates of one connector directory, once per
// file: expanding many datatypes from one template does not re-parse it.
// A Set is safe for concurrent use.
type Set struct {
	dir   string
	mu    sync.Mutex
	cache map[string]*Template
}

// NewSet returns a Set reading templates from dir.
func NewSet(dir string) *Set {
	return &Set{dir: dir, cache: map[string]*Template{}}
}

// CheckPath reports whether name (slash-separated, relative to the
// connector directory) stays inside it: absolute paths and ".." segments
// that leave the directory are refused.
func CheckPath(name string) error {
	if name == "" {
		return errors.New("empty template path")
	}
	clean := path.Clean(strings.ReplaceAll(name, `\`, "/"))
	if path.IsAbs(clean) || filepath.IsAbs(name) || clean == ".." || strings.HasPrefix(clean, "../") || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return fmt.Errorf("template path %q is outside the connector directory", name)
	}
	return nil
}

// Get returns the compiled template for name, a path relative to the Set's
// directory. Paths leaving the directory (also through symbolic links) are
// refused.
func (s *Set) Get(name string) (*Template, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.cache[name]; ok {
		return t, nil
	}
	if err := CheckPath(name); err != nil {
		return nil, &Error{File: name, Err: err}
	}
	root, err := os.OpenRoot(s.dir)
	if err != nil {
		return nil, &Error{File: name, Err: fmt.Errorf("open connector directory: %w", err)}
	}
	defer root.Close()
	src, err := root.ReadFile(filepath.FromSlash(path.Clean(name)))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &Error{File: name, Err: fmt.Errorf("template file not found in %s: %w", s.dir, err)}
		}
		return nil, &Error{File: name, Err: fmt.Errorf("read template: %w", err)}
	}
	t, err := Compile(name, string(src))
	if err != nil {
		return nil, err
	}
	s.cache[name] = t
	return t, nil
}
