package jinja

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nikolalohinski/gonja/v2/builtins"
	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// maxValueBytes caps every string a filter, a string method or the `*`
// operator may produce, so no template can allocate without bound.
const maxValueBytes = 8 << 20

// mulGuardFilter is the hidden filter Compile wraps around the right operand
// of every `*` so that string repetition is capped (see guardMultiply).
const mulGuardFilter = "__ferry_mul_guard"

// listCheckFilter is the hidden filter Compile applies to list and tuple
// literals; it turns an element that failed to evaluate into an error.
const listCheckFilter = "__ferry_list_check"

// engineSets holds the filter, test, method and control-structure sets
// shared by every template. They are built once and never modified.
type engineSets struct {
	filters *exec.FilterSet
	tests   *exec.TestSet
	control *exec.ControlStructureSet
	methods exec.Methods
}

// sharedSets returns the process-wide, read-only engine sets.
var sharedSets = sync.OnceValue(newEngineSets)

// allowedFilters are the gonja built-in filters Ferry exposes: the pure
// ones whose result size is bounded by their input. Filters that can grow a
// value from a parameter (center, indent, wordwrap, batch, slice, format,
// urlize) or are non-deterministic (random) are left out.
var allowedFilters = []string{
	"abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e",
	"escape", "first", "float", "forceescape", "join", "last", "length",
	"list", "lower", "map", "max", "min", "reject", "rejectattr", "reverse",
	"round", "safe", "select", "selectattr", "sort", "string", "striptags",
	"sum", "title", "trim", "truncate", "unique", "upper",
	"wordcount", "items",
}

// allowedStrMethods are the Python str methods available on strings;
// padding methods (center, ljust, rjust, zfill, expandtabs) and format are
// left out because a parameter can make them allocate without bound.
var allowedStrMethods = []string{
	"capitalize", "casefold", "count", "endswith", "find", "isalnum",
	"isalpha", "isascii", "isdecimal", "isdigit", "islower", "isnumeric",
	"isprintable", "isspace", "istitle", "isupper", "join", "lower", "lstrip",
	"partition", "removeprefix", "removesuffix", "rfind", "rpartition",
	"rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
	"swapcase", "title", "upper",
}

func newEngineSets() *engineSets {
	filters := map[string]exec.FilterFunction{}
	for _, name := range allowedFilters {
		fn, ok := builtins.Filters.Get(name)
		if !ok {
			continue
		}
		filters[name] = capFilter(name, fn)
	}
	builtinInt, _ := builtins.Filters.Get("int")
	filters["int"] = intFilter(builtinInt)
	filters["tojson"] = tojsonFilter
	filters["replace"] = replaceFilter
	filters["base64_encode"] = base64EncodeFilter
	filters["b64encode"] = base64EncodeFilter
	filters["base64_decode"] = base64DecodeFilter
	filters["urlencode"] = urlencodeFilter
	filters[mulGuardFilter] = mulGuard
	filters[listCheckFilter] = listCheck

	tests := map[string]exec.TestFunction{}
	for _, name := range []string{
		"boolean", "callable", "divisibleby", "eq", "equalto", "==", "escaped",
		"even", "false", "float", "ge", ">=", "gt", "greaterthan", ">", "in",
		"integer", "iterable", "le", "<=", "lower", "lt", "lessthan", "<",
		"mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence",
		"string", "true", "upper",
	} {
		if fn, ok := builtins.Tests.Get(name); ok {
			tests[name] = fn
		}
	}
	tests["defined"] = testDefined
	tests["undefined"] = testUndefined

	control := map[string]parser.ControlStructureParser{}
	for _, name := range []string{"if", "raw"} {
		if p, ok := builtins.ControlStructures.Get(name); ok {
			control[name] = p
		}
	}

	str := map[string]exec.Method[string]{}
	for _, name := range allowedStrMethods {
		if m, ok := builtins.Methods.Str.Get(name); ok {
			str[name] = m
		}
	}
	str["replace"] = strReplaceMethod
	dict := map[string]exec.Method[map[string]any]{}
	for _, name := range []string{"keys", "values", "items", "get", "copy"} {
		if m, ok := builtins.Methods.Dict.Get(name); ok {
			dict[name] = m
		}
	}
	list := map[string]exec.Method[[]any]{}
	if m, ok := builtins.Methods.List.Get("copy"); ok {
		list["copy"] = m
	}

	return &engineSets{
		filters: exec.NewFilterSet(filters),
		tests:   exec.NewTestSet(tests),
		control: exec.NewControlStructureSet(control),
		methods: exec.Methods{
			Bool:  builtins.Methods.Bool,
			Int:   builtins.Methods.Int,
			Float: builtins.Methods.Float,
			Str:   exec.NewMethodSet(str),
			Dict:  exec.NewMethodSet(dict),
			List:  exec.NewMethodSet(list),
		},
	}
}

// newConfig returns the lexer/parser configuration: standard Jinja2
// delimiters, strict undefined, no autoescape.
func newConfig() *config.Config {
	c := config.New()
	c.StrictUndefined = true
	return c
}

// testDefined is Jinja2's `defined` under Ferry's rules: a value is defined
// unless evaluating it failed (undefined name, missing key or attribute,
// attribute of None). Unlike gonja's built-in, None is defined, as in
// Jinja2.
func testDefined(_ *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) (bool, error) {
	return !in.IsError(), nil
}

func testUndefined(e *exec.Evaluator, in *exec.Value, p *exec.VarArgs) (bool, error) {
	d, err := testDefined(e, in, p)
	return !d, err
}

// capFilter wraps a built-in filter so that an over-long string result is
// an error.
func capFilter(name string, fn exec.FilterFunction) exec.FilterFunction {
	return func(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
		out := fn(e, in, params)
		if out != nil && out.IsString() && len(out.String()) > maxValueBytes {
			return exec.AsValue(fmt.Errorf("filter %s: result longer than %d bytes", name, maxValueBytes))
		}
		return out
	}
}

// intFilter is Jinja2's int filter, made exact for numbers beyond int64:
// an integral exact number is returned unchanged instead of being rounded
// through float64.
func intFilter(builtin exec.FilterFunction) exec.FilterFunction {
	return func(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
		if n, ok := in.Interface().(*exactFloat); ok && isIntegerText(n.String()) {
			return in
		}
		return builtin(e, in, params)
	}
}

func isIntegerText(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// tojsonFilter is Jinja2's tojson; see appendJSON for the exact format.
func tojsonFilter(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	v, err := toFerry(in)
	if err != nil {
		return exec.AsValue(fmt.Errorf("tojson: %w", err))
	}
	b, err := appendJSON(nil, v)
	if err != nil {
		return exec.AsValue(fmt.Errorf("tojson: %w", err))
	}
	if len(b) > maxValueBytes {
		return exec.AsValue(fmt.Errorf("tojson: result longer than %d bytes", maxValueBytes))
	}
	return exec.AsSafeValue(string(b))
}

// replaceFilter is Jinja2's replace(old, new, count=None), checked for size
// before it allocates.
func replaceFilter(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if len(params.Args) < 2 {
		return exec.AsValue(errors.New("replace: expected old and new"))
	}
	n := -1
	if len(params.Args) > 2 {
		n = params.Args[2].Integer()
	} else if c, ok := params.KwArgs["count"]; ok && !c.IsNil() {
		n = c.Integer()
	}
	out, err := boundedReplace(in.String(), params.Args[0].String(), params.Args[1].String(), n)
	if err != nil {
		return exec.AsValue(err)
	}
	return exec.AsValue(out)
}

// strReplaceMethod is str.replace(old, new[, count]) with the same bound.
func strReplaceMethod(self string, _ *exec.Value, params *exec.VarArgs) (any, error) {
	if len(params.Args) < 2 {
		return nil, errors.New("replace: expected old and new")
	}
	n := -1
	if len(params.Args) > 2 {
		n = params.Args[2].Integer()
	}
	return boundedReplace(self, params.Args[0].String(), params.Args[1].String(), n)
}

// boundedReplace is Python's str.replace (n < 0 means all; an empty old
// inserts at every character boundary, as in Python and Go), refusing
// results over maxValueBytes before building them.
func boundedReplace(s, old, repl string, n int) (string, error) {
	count := strings.Count(s, old)
	if n >= 0 && n < count {
		count = n
	}
	if size := len(s) + count*(len(repl)-len(old)); size > maxValueBytes {
		return "", fmt.Errorf("replace: result longer than %d bytes", maxValueBytes)
	}
	return strings.Replace(s, old, repl, n), nil
}

func base64EncodeFilter(_ *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	return exec.AsValue(b64encode(in.String()))
}

// base64DecodeFilter decodes standard base64 (padding optional, URL-safe
// alphabet accepted) to a string.
func base64DecodeFilter(_ *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	s := strings.TrimRight(strings.TrimSpace(in.String()), "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return exec.AsValue(string(b))
		}
	}
	return exec.AsValue(errors.New("base64_decode: input is not base64"))
}

// mulGuard receives the right operand of a `*` as its input and the left
// one as its argument; it fails when the product would repeat a string past
// maxValueBytes and otherwise passes the right operand through unchanged.
func mulGuard(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() || len(params.Args) != 1 {
		return in
	}
	left := params.Args[0]
	if left.IsString() && !left.IsFloat() && !in.IsFloat() {
		if n := in.Integer(); n > 0 && len(left.String()) > 0 && n > maxValueBytes/len(left.String()) {
			return exec.AsValue(fmt.Errorf("string repetition longer than %d bytes", maxValueBytes))
		}
	}
	return in
}

// listCheck returns the first element of a list literal that failed to
// evaluate, or the list.
func listCheck(_ *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
	if l, ok := in.Interface().(exec.ValuesList); ok {
		for _, v := range l {
			if v.IsError() {
				return v
			}
		}
	}
	return in
}

// urlencodeFilter is Jinja2's urlencode: a string is percent-encoded
// keeping only unreserved characters and '/' (Python quote(s, safe="/"));
// a dict or a list of pairs becomes a query string with keys and values
// encoded with safe="" and spaces as '+'.
func urlencodeFilter(_ *exec.Evaluator, in *exec.Value, _ *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if in.IsDict() {
		var parts []string
		for _, k := range in.Keys() {
			v, _ := in.GetItem(k.Interface())
			parts = append(parts, pyQuote(k.String(), "", true)+"="+pyQuote(v.String(), "", true))
		}
		return exec.AsValue(strings.Join(parts, "&"))
	}
	if in.IsList() {
		var parts []string
		for i := range in.Len() {
			p := in.Index(i)
			if p.Len() != 2 {
				return exec.AsValue(errors.New("urlencode: list items must be pairs"))
			}
			parts = append(parts, pyQuote(p.Index(0).String(), "", true)+"="+pyQuote(p.Index(1).String(), "", true))
		}
		return exec.AsValue(strings.Join(parts, "&"))
	}
	return exec.AsValue(pyQuote(in.String(), "/", false))
}

// pyQuote is Python's urllib.parse.quote: bytes outside A-Z a-z 0-9 _ . - ~
// and safe become %XX (upper-case hex); plus turns %20 into '+'.
func pyQuote(s, safe string, plus bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '_', c == '.', c == '-', c == '~', strings.IndexByte(safe, c) >= 0:
			b.WriteByte(c)
		case c == ' ' && plus:
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// analyser walks a parsed template once, at compile time. It records the
// top-level names the template reads, checks that every filter and test
// exists (Jinja2 reports unknown ones at compile time, gonja only at render
// time), and patches three gonja gaps by rewriting the tree:
//
//   - the right operand of every `*` goes through mulGuardFilter (bounded
//     string repetition);
//   - every list or tuple literal goes through listCheckFilter, so an
//     undefined element is an error as in Jinja2 (gonja silently keeps the
//     error value inside the list);
//   - a method call on a parenthesised expression (`(a ~ b).split('/')`)
//     gets the parent gonja's parser leaves unset.
type analyser struct {
	sets  *engineSets
	names map[string]bool
	seen  map[nodes.Node]nodes.Node
	err   error
	// members holds the constant attributes and keys read of each
	// top-level name (name.key, name['key']); whole the names also read
	// in any other way; viaMember the name nodes read through a member.
	members   map[string]map[string]bool
	whole     map[string]bool
	viaMember map[*nodes.Name]bool
}

// dictMethods are attribute names that may resolve to a method of a
// mapping rather than to its key: reading one counts as reading the
// whole mapping.
var dictMethods = map[string]bool{"items": true, "keys": true, "values": true, "get": true, "update": true, "pop": true, "copy": true}

// member records that the template reads key of the name node n, if n is
// a top-level name; it reports whether it did.
func (a *analyser) member(n nodes.Node, key string) bool {
	nm, ok := n.(*nodes.Name)
	if !ok {
		return false
	}
	if key == "" || dictMethods[key] {
		return false
	}
	ks := a.members[nm.Name.Val]
	if ks == nil {
		ks = map[string]bool{}
		a.members[nm.Name.Val] = ks
	}
	ks[key] = true
	a.viaMember[nm] = true
	return true
}

// wholeUse records that the template reads the name node n (if it is
// one) other than through a constant member.
func (a *analyser) wholeUse(n nodes.Node) {
	if nm, ok := n.(*nodes.Name); ok {
		a.whole[nm.Name.Val] = true
	}
}

func (a *analyser) fail(format string, args ...any) {
	if a.err == nil {
		a.err = fmt.Errorf(format, args...)
	}
}

func (a *analyser) node(n nodes.Node) {
	switch x := n.(type) {
	case *nodes.Template:
		for _, c := range x.Nodes {
			a.node(c)
		}
	case *nodes.Wrapper:
		if x == nil {
			return
		}
		for _, c := range x.Nodes {
			a.node(c)
		}
	case *nodes.Output:
		x.Expression = a.expr(x.Expression)
		x.Condition = a.expr(x.Condition)
		x.Alternative = a.expr(x.Alternative)
	case *nodes.ControlStructureBlock:
		a.control(x.ControlStructure)
	}
}

// control handles the structures enabled in newEngineSets: if (conditions
// and branches) and raw (literal text, nothing to analyse).
func (a *analyser) control(cs nodes.ControlStructure) {
	if ifc, ok := cs.(*controlStructures.IfControlStructure); ok {
		for i, cond := range ifc.Conditions {
			ifc.Conditions[i] = a.expr(cond)
		}
		for _, w := range ifc.Wrappers {
			a.node(w)
		}
	}
}

// expr analyses an expression and returns its (possibly rewritten) node.
func (a *analyser) expr(e nodes.Expression) nodes.Expression {
	if e == nil {
		return nil
	}
	if r, ok := a.any(e).(nodes.Expression); ok {
		return r
	}
	return e
}

// any is expr for the fields gonja types as nodes.Node. A node reachable
// twice (a method call's target is both the call's Parent and its Func's
// Node) is analysed once and gets the same replacement both times.
func (a *analyser) any(n nodes.Node) nodes.Node {
	if n == nil {
		return nil
	}
	if r, ok := a.seen[n]; ok {
		return r
	}
	r := a.visit(n)
	a.seen[n] = r
	return r
}

func (a *analyser) visit(n nodes.Node) nodes.Node {
	switch x := n.(type) {
	case *nodes.Name:
		a.names[x.Name.Val] = true
		if !a.viaMember[x] {
			a.wholeUse(x)
		}
	case *nodes.List:
		for i, e := range x.Val {
			x.Val[i] = a.expr(e)
		}
		return wrapFilter(x, listCheckFilter, x.Location)
	case *nodes.Tuple:
		for i, e := range x.Val {
			x.Val[i] = a.expr(e)
		}
		return wrapFilter(x, listCheckFilter, x.Location)
	case *nodes.Dict:
		for _, p := range x.Pairs {
			p.Key = a.expr(p.Key)
			p.Value = a.expr(p.Value)
		}
	case *nodes.Pair:
		x.Key = a.expr(x.Key)
		x.Value = a.expr(x.Value)
	case *nodes.Call:
		if ga, ok := x.Func.(*nodes.GetAttribute); ok {
			a.wholeUse(ga.Node) // a method of the name: name.split(...)
		}
		x.Func = a.any(x.Func)
		x.Parent = a.any(x.Parent)
		if ga, ok := x.Func.(*nodes.GetAttribute); ok && x.Parent == nil {
			x.Parent = ga.Node
		}
		for i, e := range x.Args {
			x.Args[i] = a.expr(e)
		}
		for k, e := range x.Kwargs {
			x.Kwargs[k] = a.expr(e)
		}
	case *nodes.GetItem:
		if k, ok := x.Arg.(*nodes.String); !ok || !a.member(x.Node, k.Val) {
			a.wholeUse(x.Node)
		}
		x.Node = a.any(x.Node)
		x.Arg = a.any(x.Arg)
	case *nodes.GetAttribute:
		if !a.member(x.Node, x.Attribute) {
			a.wholeUse(x.Node)
		}
		x.Node = a.any(x.Node)
	case *nodes.GetSlice:
		x.Node = a.any(x.Node)
		x.Start = a.any(x.Start)
		x.End = a.any(x.End)
		x.Step = a.any(x.Step)
	case *nodes.Negation:
		x.Term = a.expr(x.Term)
	case *nodes.UnaryExpression:
		x.Term = a.expr(x.Term)
	case *nodes.BinaryExpression:
		x.Left = a.expr(x.Left)
		x.Right = a.expr(x.Right)
		if x.Operator != nil && x.Operator.Token != nil && x.Operator.Token.Type == tokens.Multiply {
			x.Right = wrapFilter(x.Right, mulGuardFilter, x.Operator.Token, x.Left)
		}
	case *nodes.FilteredExpression:
		x.Expression = a.expr(x.Expression)
		for _, f := range x.Filters {
			if !a.sets.filters.Exists(f.Name) {
				a.fail("unknown filter %q", f.Name)
			}
			for i, e := range f.Args {
				f.Args[i] = a.expr(e)
			}
			for k, e := range f.Kwargs {
				f.Kwargs[k] = a.expr(e)
			}
		}
	case *nodes.TestExpression:
		x.Expression = a.expr(x.Expression)
		if x.Test != nil {
			if !a.sets.tests.Exists(x.Test.Name) {
				a.fail("unknown test %q", x.Test.Name)
			}
			for i, e := range x.Test.Args {
				x.Test.Args[i] = a.expr(e)
			}
			for k, e := range x.Test.Kwargs {
				x.Test.Kwargs[k] = a.expr(e)
			}
		}
	}
	return n
}

// wrapFilter returns `e | name(args...)` as a node.
func wrapFilter(e nodes.Expression, name string, tok *tokens.Token, args ...nodes.Expression) nodes.Expression {
	return &nodes.FilteredExpression{
		Expression: e,
		Filters:    []*nodes.FilterCall{{Token: tok, Name: name, Args: args}},
	}
}
