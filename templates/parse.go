package templates

import (
	"math/big"
	"strconv"
	"strings"
)

// The expression AST. Every node evaluates to a Python-like value (see
// value.go).
type (
	expr interface{ pos() int }

	constExpr struct {
		v   any
		off int
	}
	nameExpr struct {
		name string
		off  int
	}
	listExpr struct {
		items []expr
		tuple bool
		off   int
	}
	dictExpr struct {
		keys, vals []expr
		off        int
	}
	attrExpr struct {
		x    expr
		name string
		off  int
	}
	itemExpr struct {
		x, key expr
		off    int
	}
	callExpr struct {
		fn     expr
		args   []expr
		kwargs []kwarg
		off    int
	}
	filterExpr struct {
		x      expr // nil inside {{% filter %}} (unsupported)
		name   string
		args   []expr
		kwargs []kwarg
		off    int
	}
	testExpr struct {
		x    expr
		name string
		args []expr
		neg  bool
		off  int
	}
	unaryExpr struct {
		op  string // "-", "+", "not"
		x   expr
		off int
	}
	binExpr struct {
		op   string // + - * / // % ** ~ and or
		l, r expr
		off  int
	}
	cmpExpr struct {
		first expr
		ops   []string // == != < <= > >= in notin
		rest  []expr
		off   int
	}
	condExpr struct {
		test, then, els expr // els may be nil: undefined
		off             int
	}
)

type kwarg struct {
	name string
	val  expr
}

func (e *constExpr) pos() int  { return e.off }
func (e *nameExpr) pos() int   { return e.off }
func (e *listExpr) pos() int   { return e.off }
func (e *dictExpr) pos() int   { return e.off }
func (e *attrExpr) pos() int   { return e.off }
func (e *itemExpr) pos() int   { return e.off }
func (e *callExpr) pos() int   { return e.off }
func (e *filterExpr) pos() int { return e.off }
func (e *testExpr) pos() int   { return e.off }
func (e *unaryExpr) pos() int  { return e.off }
func (e *binExpr) pos() int    { return e.off }
func (e *cmpExpr) pos() int    { return e.off }
func (e *condExpr) pos() int   { return e.off }

// stmt is a parsed {{% ... %}} statement.
type stmt struct {
	kind    string // if elif else endif for endfor set
	x       expr   // if/elif condition, for iterable, set value
	targets []string
	cond    expr // for ... if cond
	off     int
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) cur() token  { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) isOp(op string) bool {
	t := p.cur()
	return t.kind == tkOp && t.val == op
}

func (p *parser) isName(name string) bool {
	t := p.cur()
	return t.kind == tkName && t.val == name
}

func (p *parser) expectOp(op string) error {
	if !p.isOp(op) {
		return errAt(p.cur().off, "expected '%s', got %s", op, p.cur())
	}
	p.i++
	return nil
}

func (p *parser) expectEnd() error {
	if p.cur().kind != tkEOF {
		return errAt(p.cur().off, "expected end of tag, got %s", p.cur())
	}
	return nil
}

// statementWords are Jinja statement keywords. Jinja2 parses "{{ for }}"
// as a variable named "for", which is undefined and renders as nothing;
// in an expansion tag that is always a mistyped statement, so Ferry
// refuses it (sesam-py would silently expand to nothing).
var statementWords = map[string]string{
	"for": "{{% for x in list %}}...{{% endfor %}}", "endfor": "{{% endfor %}}",
	"if": "{{% if cond %}}...{{% endif %}}", "elif": "{{% elif cond %}}", "else": "{{% else %}}", "endif": "{{% endif %}}",
	"set": "{{% set name = value %}}", "raw": "{{% raw %}}...{{% endraw %}}", "endraw": "{{% endraw %}}",
	"macro": "", "endmacro": "", "block": "", "endblock": "", "extends": "", "include": "", "import": "",
	"call": "", "endcall": "", "filter": "", "endfilter": "", "with": "", "endwith": "",
}

// parseOutput parses the body of {{@ ... @}}.
func parseOutput(toks []token) (expr, error) {
	if len(toks) >= 1 && toks[0].kind == tkName {
		if w := toks[0].val; (w == "in" || w == "is") && (len(toks) == 1 || toks[1].kind == tkEOF) {
			return nil, errAt(toks[0].off, "'%s' is an operator, not a value", w)
		}
		if form, ok := statementWords[toks[0].val]; ok && (len(toks) == 1 || toks[1].kind == tkEOF || toks[1].kind == tkName) {
			if form == "" {
				return nil, errAt(toks[0].off, "'%s' is a Jinja statement, which expansion tags do not support", toks[0].val)
			}
			return nil, errAt(toks[0].off, "'%s' is a statement, not a value: write it as %s", toks[0].val, form)
		}
	}
	p := &parser{toks: toks}
	e, err := p.parseTuple(true, false, nil)
	if err != nil {
		return nil, err
	}
	return e, p.expectEnd()
}

// parseStmt parses the body of {{% ... %}}.
func parseStmt(toks []token) (*stmt, error) {
	p := &parser{toks: toks}
	kw := p.next()
	if kw.kind != tkName {
		return nil, errAt(kw.off, "expected a statement name, got %s", kw)
	}
	s := &stmt{kind: kw.val, off: kw.off}
	var err error
	switch kw.val {
	case "if", "elif":
		s.x, err = p.parseTuple(false, false, nil)
	case "else", "endif", "endfor":
	case "for":
		if s.targets, err = p.parseTargets("in"); err != nil {
			return nil, err
		}
		if !p.isName("in") {
			return nil, errAt(p.cur().off, "expected 'in', got %s", p.cur())
		}
		p.i++
		if s.x, err = p.parseTuple(false, false, []string{"if", "recursive"}); err != nil {
			return nil, err
		}
		if p.isName("if") {
			p.i++
			if s.cond, err = p.parseExpression(true); err != nil {
				return nil, err
			}
		}
		if p.isName("recursive") {
			return nil, errAt(p.cur().off, "recursive for loops are not supported at expansion time")
		}
	case "set":
		if s.targets, err = p.parseTargets("="); err != nil {
			return nil, err
		}
		if !p.isOp("=") {
			return nil, errAt(p.cur().off, "block assignments ({{%% set x %%}}...{{%% endset %%}}) are not supported at expansion time")
		}
		p.i++
		s.x, err = p.parseTuple(true, false, nil)
	case "endraw":
		return nil, errAt(kw.off, "endraw without raw")
	default:
		return nil, errAt(kw.off, "statement '%s' is not supported at expansion time (supported: if, elif, else, endif, for, else, endfor, set, raw, endraw)", kw.val)
	}
	if err != nil {
		return nil, err
	}
	if err := p.expectEnd(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseTargets parses "a" or "a, b" or "(a, b)" before the keyword/operator stop.
func (p *parser) parseTargets(stop string) ([]string, error) {
	paren := p.isOp("(")
	if paren {
		p.i++
	}
	var names []string
	for {
		t := p.cur()
		if t.kind != tkName || t.val == stop || isReserved(t.val) {
			return nil, errAt(t.off, "expected a variable name, got %s", t)
		}
		names = append(names, t.val)
		p.i++
		if !p.isOp(",") {
			break
		}
		p.i++
		if paren && p.isOp(")") || !paren && (p.isName(stop) || p.isOp(stop)) {
			break
		}
	}
	if paren {
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func isReserved(name string) bool {
	switch name {
	case "true", "false", "none", "True", "False", "None", "in", "not", "and", "or", "is", "if", "else":
		return true
	}
	return false
}

// parseTuple is Jinja2's parse_tuple: an expression or a comma separated
// tuple without parentheses.
func (p *parser) parseTuple(condexpr, explicitParens bool, endNames []string) (expr, error) {
	off := p.cur().off
	var items []expr
	isTuple := false
	for {
		if len(items) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, err
			}
		}
		t := p.cur()
		if t.kind == tkEOF || t.kind == tkOp && (t.val == ")" || t.val == "]" || t.val == "}") {
			break
		}
		if t.kind == tkName && contains(endNames, t.val) {
			break
		}
		e, err := p.parseExpression(condexpr)
		if err != nil {
			return nil, err
		}
		items = append(items, e)
		if !p.isOp(",") {
			break
		}
		isTuple = true
	}
	if !isTuple {
		if len(items) > 0 {
			return items[0], nil
		}
		if !explicitParens {
			return nil, errAt(p.cur().off, "expected an expression, got %s", p.cur())
		}
	}
	return &listExpr{items: items, tuple: true, off: off}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) parseExpression(condexpr bool) (expr, error) {
	if condexpr {
		return p.parseCondexpr()
	}
	return p.parseOr()
}

func (p *parser) parseCondexpr() (expr, error) {
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	for p.isName("if") {
		off := p.next().off
		test, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		var els expr
		if p.isName("else") {
			p.i++
			if els, err = p.parseCondexpr(); err != nil {
				return nil, err
			}
		}
		e = &condExpr{test: test, then: e, els: els, off: off}
	}
	return e, nil
}

func (p *parser) parseOr() (expr, error) {
	return p.parseBinary([]string{"or"}, true, (*parser).parseAnd)
}

func (p *parser) parseAnd() (expr, error) {
	return p.parseBinary([]string{"and"}, true, (*parser).parseNot)
}

func (p *parser) parseNot() (expr, error) {
	if p.isName("not") {
		off := p.next().off
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{op: "not", x: x, off: off}, nil
	}
	return p.parseCompare()
}

func (p *parser) parseCompare() (expr, error) {
	off := p.cur().off
	first, err := p.parseMath1()
	if err != nil {
		return nil, err
	}
	var ops []string
	var rest []expr
	for {
		t := p.cur()
		var op string
		switch {
		case t.kind == tkOp && (t.val == "==" || t.val == "!=" || t.val == "<" || t.val == "<=" || t.val == ">" || t.val == ">="):
			op = t.val
			p.i++
		case t.kind == tkName && t.val == "in":
			op = "in"
			p.i++
		case t.kind == tkName && t.val == "not" && p.toks[p.i+1].kind == tkName && p.toks[p.i+1].val == "in":
			op = "notin"
			p.i += 2
		}
		if op == "" {
			break
		}
		r, err := p.parseMath1()
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
		rest = append(rest, r)
	}
	if len(ops) == 0 {
		return first, nil
	}
	return &cmpExpr{first: first, ops: ops, rest: rest, off: off}, nil
}

func (p *parser) parseMath1() (expr, error) {
	return p.parseBinary([]string{"+", "-"}, false, (*parser).parseConcat)
}

func (p *parser) parseConcat() (expr, error) {
	return p.parseBinary([]string{"~"}, false, (*parser).parseMath2)
}

func (p *parser) parseMath2() (expr, error) {
	return p.parseBinary([]string{"*", "/", "//", "%"}, false, (*parser).parsePow)
}

func (p *parser) parsePow() (expr, error) {
	return p.parseBinary([]string{"**"}, false, func(p *parser) (expr, error) { return p.parseUnary(true) })
}

// parseBinary parses a left-associative chain of the given operators (names
// when words is set, else operator symbols).
func (p *parser) parseBinary(ops []string, words bool, sub func(*parser) (expr, error)) (expr, error) {
	l, err := sub(p)
	if err != nil {
		return nil, err
	}
	for {
		t := p.cur()
		if words && t.kind != tkName || !words && t.kind != tkOp || !contains(ops, t.val) {
			return l, nil
		}
		p.i++
		r, err := sub(p)
		if err != nil {
			return nil, err
		}
		l = &binExpr{op: t.val, l: l, r: r, off: t.off}
	}
}

func (p *parser) parseUnary(withFilter bool) (expr, error) {
	var e expr
	var err error
	if p.isOp("-") || p.isOp("+") {
		t := p.next()
		x, err := p.parseUnary(false)
		if err != nil {
			return nil, err
		}
		e = &unaryExpr{op: t.val, x: x, off: t.off}
	} else if e, err = p.parsePrimary(); err != nil {
		return nil, err
	}
	if e, err = p.parsePostfix(e); err != nil {
		return nil, err
	}
	if withFilter {
		return p.parseFilterExpr(e)
	}
	return e, nil
}

func (p *parser) parsePrimary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tkName:
		switch t.val {
		case "true", "True":
			return &constExpr{v: true, off: t.off}, nil
		case "false", "False":
			return &constExpr{v: false, off: t.off}, nil
		case "none", "None":
			return &constExpr{v: nil, off: t.off}, nil
		}
		return &nameExpr{name: t.val, off: t.off}, nil
	case tkString:
		s := t.val
		for p.cur().kind == tkString {
			s += p.next().val
		}
		return &constExpr{v: s, off: t.off}, nil
	case tkInt:
		if n, err := strconv.ParseInt(t.val, 10, 64); err == nil {
			return &constExpr{v: n, off: t.off}, nil
		}
		b, ok := new(big.Int).SetString(t.val, 10)
		if !ok {
			return nil, errAt(t.off, "invalid integer %s", t.val)
		}
		return &constExpr{v: b, off: t.off}, nil
	case tkFloat:
		f, err := strconv.ParseFloat(t.val, 64)
		if err != nil && !strings.Contains(err.Error(), "range") {
			return nil, errAt(t.off, "invalid float %s", t.val)
		}
		return &constExpr{v: f, off: t.off}, nil
	case tkOp:
		switch t.val {
		case "(":
			e, err := p.parseTuple(true, true, nil)
			if err != nil {
				return nil, err
			}
			return e, p.expectOp(")")
		case "[":
			var items []expr
			for !p.isOp("]") {
				if len(items) > 0 {
					if err := p.expectOp(","); err != nil {
						return nil, err
					}
					if p.isOp("]") {
						break
					}
				}
				e, err := p.parseExpression(true)
				if err != nil {
					return nil, err
				}
				items = append(items, e)
			}
			p.i++
			return &listExpr{items: items, off: t.off}, nil
		case "{":
			d := &dictExpr{off: t.off}
			for !p.isOp("}") {
				if len(d.keys) > 0 {
					if err := p.expectOp(","); err != nil {
						return nil, err
					}
					if p.isOp("}") {
						break
					}
				}
				k, err := p.parseExpression(true)
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.parseExpression(true)
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
			}
			p.i++
			return d, nil
		}
	}
	return nil, errAt(t.off, "unexpected %s", t)
}

func (p *parser) parsePostfix(e expr) (expr, error) {
	for {
		switch {
		case p.isOp("."):
			p.i++
			t := p.next()
			switch t.kind {
			case tkName:
				e = &attrExpr{x: e, name: t.val, off: t.off}
			case tkInt:
				n, _ := strconv.ParseInt(t.val, 10, 64)
				e = &itemExpr{x: e, key: &constExpr{v: n, off: t.off}, off: t.off}
			default:
				return nil, errAt(t.off, "expected a name after '.', got %s", t)
			}
		case p.isOp("["):
			off := p.next().off
			if p.isOp(":") {
				return nil, errAt(p.cur().off, "slices are not supported at expansion time")
			}
			k, err := p.parseExpression(true)
			if err != nil {
				return nil, err
			}
			if p.isOp(":") {
				return nil, errAt(p.cur().off, "slices are not supported at expansion time")
			}
			if err := p.expectOp("]"); err != nil {
				return nil, err
			}
			e = &itemExpr{x: e, key: k, off: off}
		case p.isOp("("):
			c := &callExpr{fn: e, off: p.cur().off}
			var err error
			if c.args, c.kwargs, err = p.parseCallArgs(); err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}

// parseCallArgs parses "(a, b, k=v)"; the current token is "(".
func (p *parser) parseCallArgs() ([]expr, []kwarg, error) {
	p.i++
	var args []expr
	var kwargs []kwarg
	for !p.isOp(")") {
		if len(args)+len(kwargs) > 0 {
			if err := p.expectOp(","); err != nil {
				return nil, nil, err
			}
			if p.isOp(")") {
				break
			}
		}
		if p.isOp("*") || p.isOp("**") {
			return nil, nil, errAt(p.cur().off, "*args and **kwargs are not supported at expansion time")
		}
		if p.cur().kind == tkName && p.toks[p.i+1].kind == tkOp && p.toks[p.i+1].val == "=" {
			name := p.next().val
			p.i++
			v, err := p.parseExpression(true)
			if err != nil {
				return nil, nil, err
			}
			kwargs = append(kwargs, kwarg{name: name, val: v})
			continue
		}
		if len(kwargs) > 0 {
			return nil, nil, errAt(p.cur().off, "positional argument after keyword argument")
		}
		v, err := p.parseExpression(true)
		if err != nil {
			return nil, nil, err
		}
		args = append(args, v)
	}
	p.i++
	return args, kwargs, nil
}

func (p *parser) parseDottedName() (string, int, error) {
	t := p.next()
	if t.kind != tkName {
		return "", 0, errAt(t.off, "expected a filter or test name, got %s", t)
	}
	name := t.val
	for p.isOp(".") && p.toks[p.i+1].kind == tkName {
		p.i++
		name += "." + p.next().val
	}
	return name, t.off, nil
}

func (p *parser) parseFilterExpr(e expr) (expr, error) {
	for {
		switch {
		case p.isOp("|"):
			p.i++
			name, off, err := p.parseDottedName()
			if err != nil {
				return nil, err
			}
			f := &filterExpr{x: e, name: name, off: off}
			if p.isOp("(") {
				if f.args, f.kwargs, err = p.parseCallArgs(); err != nil {
					return nil, err
				}
			}
			e = f
		case p.isName("is"):
			p.i++
			neg := false
			if p.isName("not") {
				p.i++
				neg = true
			}
			name, off, err := p.parseDottedName()
			if err != nil {
				return nil, err
			}
			te := &testExpr{x: e, name: name, neg: neg, off: off}
			t := p.cur()
			switch {
			case p.isOp("("):
				if te.args, _, err = p.parseCallArgs(); err != nil {
					return nil, err
				}
			case t.kind == tkName && t.val != "else" && t.val != "or" && t.val != "and" ||
				t.kind == tkString || t.kind == tkInt || t.kind == tkFloat || p.isOp("[") || p.isOp("{"):
				arg, err := p.parsePrimary()
				if err != nil {
					return nil, err
				}
				if arg, err = p.parsePostfix(arg); err != nil {
					return nil, err
				}
				te.args = []expr{arg}
			}
			e = te
		case p.isOp("("):
			c := &callExpr{fn: e, off: p.cur().off}
			var err error
			if c.args, c.kwargs, err = p.parseCallArgs(); err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}
