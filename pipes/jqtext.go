package pipes

import (
	"bytes"
	"context"
	"slices"

	"github.com/itchyny/gojq"

	"github.com/ferrydata/ferry/engine"
)

// This file is the jq transform's text path: a program that only maps
// fields runs on canonical JSON text instead of on a decoded map (a
// stored record's body, or a source's text canonicalized with every key
// kept: engine.PrepareScratch.CanonicalObject), and its output is written
// straight in the stored form. It
// covers the programs integration engineers write most (". + {x: .a}",
// "{_id: ._id, name: .customer.name}", "del(.a, .b)", and pipes of these);
// any other program, or an entity the text path cannot be sure of, takes
// the decoded path, with the same result (TestJQTextMatchesGojq,
// FuzzJQText).
//
// The subset, decided once when the pipe is built (compileText):
//
//	program := step ("|" step)*
//	step    := obj | "del(" name ("," name)* ")"        name: .k
//	obj     := "." | "{" entry ("," entry)* "}" | obj "+" obj | "(" obj ")"
//	entry   := key ":" value | key                      key: k or "k" ({k} is {k: .k})
//	value   := obj | path | constant | value "+" value | "(" value ")"
//	path    := .k .k2 ...                              (names only)
//	constant:= null, true, false, a number, a string without
//	           interpolation, $pipe, and arrays, objects and negations
//	           of constants; evaluated once by gojq itself
//
// Every step yields one object, so the program yields one entity per
// input. What the text path gives up to the decoded path, per entity: a
// path through a value that is neither an object nor null (jq's error),
// a "+" of numbers, arrays or mixed types (the text path adds only null
// and a value, strings, and objects), and an output whose _id is not a
// non-empty string (the transform's error). Values are copied as text: the stored text is canonical, gojq
// keeps numbers as json.Number, and the transform's output is
// canonicalized as it is stored, so a copied value is what the decoded
// path writes.

// textMember is one member of an object on the text path: the key as its
// unescaped bytes (the canonical order sorts them) and the value's
// canonical text.
type textMember struct {
	key, val []byte
}

// textExprKind says what a textExpr is.
type textExprKind uint8

const (
	textIdentity textExprKind = iota // .
	textObject                       // {k: v, ...}
	textAdd                          // obj + obj
	textPath                         // .k.k2
	textConst                        // a constant, as canonical text
	textPlus                         // value + value (strings, objects, null)
)

// textExpr is a compiled expression of the subset.
type textExpr struct {
	kind    textExprKind
	entries []textEntry // textObject: sorted by key
	l, r    *textExpr   // textAdd, textPlus
	path    [][]byte    // textPath
	konst   []byte      // textConst
}

type textEntry struct {
	key []byte
	val *textExpr
}

// textStep is one step of the program's pipe: an object expression, or
// a del of top-level names (sorted) when del is not nil.
type textStep struct {
	obj *textExpr
	del [][]byte
}

// textProgram is a jq program compiled for the text path.
type textProgram struct {
	steps []textStep
	// recordKeys: the program can see the keys a record adds (_updated,
	// _ts, _previous, _hash), by a path or by using "." as a value. If it
	// cannot, they are left out: they would be dropped from the output's
	// root like every other reserved key.
	recordKeys bool
}

// recordKeyNames are the keys engine.Record adds to a stored body.
var recordKeyNames = [][]byte{[]byte("_hash"), []byte("_previous"), []byte("_ts"), []byte("_updated")}

// compileText compiles q for the text path, or returns nil when q is not
// in the subset.
func compileText(q *gojq.Query, pipe string) *textProgram {
	if q.Meta != nil || len(q.Imports) > 0 || len(q.FuncDefs) > 0 {
		return nil
	}
	c := textCompiler{pipe: pipe}
	p := &textProgram{}
	if !c.steps(q, &p.steps) {
		return nil
	}
	p.recordKeys = c.recordKeys
	return p
}

type textCompiler struct {
	pipe       string
	recordKeys bool
}

func (c *textCompiler) steps(q *gojq.Query, out *[]textStep) bool {
	if len(q.Patterns) > 0 || len(q.FuncDefs) > 0 {
		return false
	}
	if q.Op == gojq.OpPipe {
		return c.steps(q.Left, out) && c.steps(q.Right, out)
	}
	if q.Op == 0 && q.Term != nil && q.Term.Type == gojq.TermTypeFunc && len(q.Term.SuffixList) == 0 && q.Term.Func.Name == "del" {
		names, ok := delNames(q.Term.Func.Args)
		if ok {
			*out = append(*out, textStep{del: names})
		}
		return ok
	}
	e := c.obj(q)
	if e == nil {
		return false
	}
	*out = append(*out, textStep{obj: e})
	return true
}

// delNames reads del's argument when it is top-level names: del(.a, .b).
func delNames(args []*gojq.Query) ([][]byte, bool) {
	if len(args) != 1 {
		return nil, false
	}
	var names [][]byte
	var walk func(q *gojq.Query) bool
	walk = func(q *gojq.Query) bool {
		if len(q.Patterns) > 0 || len(q.FuncDefs) > 0 {
			return false
		}
		if q.Op == gojq.OpComma {
			return walk(q.Left) && walk(q.Right)
		}
		path, ok := pathOf(q)
		if !ok || len(path) != 1 {
			return false
		}
		names = append(names, path[0])
		return true
	}
	if !walk(args[0]) {
		return nil, false
	}
	slices.SortFunc(names, bytes.Compare)
	return slices.CompactFunc(names, bytes.Equal), true
}

// plainTerm returns q's term when q is one term without operator,
// suffixes or bindings.
func plainTerm(q *gojq.Query) *gojq.Term {
	if q == nil || q.Op != 0 || q.Term == nil || len(q.Patterns) > 0 || len(q.FuncDefs) > 0 || len(q.Term.SuffixList) > 0 {
		return nil
	}
	return q.Term
}

// obj compiles an expression that yields the one object it builds.
func (c *textCompiler) obj(q *gojq.Query) *textExpr {
	if q == nil || len(q.Patterns) > 0 || len(q.FuncDefs) > 0 {
		return nil
	}
	if q.Op == gojq.OpAdd {
		l, r := c.obj(q.Left), c.obj(q.Right)
		if l == nil || r == nil {
			return nil
		}
		return &textExpr{kind: textAdd, l: l, r: r}
	}
	t := plainTerm(q)
	if t == nil {
		return nil
	}
	switch t.Type {
	case gojq.TermTypeIdentity:
		return &textExpr{kind: textIdentity}
	case gojq.TermTypeQuery:
		return c.obj(t.Query)
	case gojq.TermTypeObject:
		return c.object(t.Object)
	}
	return nil
}

// object compiles {k: v, ...} with constant keys, each key once.
func (c *textCompiler) object(o *gojq.Object) *textExpr {
	e := &textExpr{kind: textObject}
	for _, kv := range o.KeyVals {
		var key string
		switch {
		case kv.Key != "" && kv.Key[0] != '$':
			key = kv.Key
		case kv.KeyString != nil && kv.KeyString.Queries == nil:
			key = kv.KeyString.Str
		default:
			return nil // $var keys, interpolated and computed keys
		}
		var val *textExpr
		if kv.Val == nil {
			val = &textExpr{kind: textPath, path: [][]byte{[]byte(key)}}
			c.notePath(val.path)
		} else if val = c.value(kv.Val); val == nil {
			return nil
		}
		e.entries = append(e.entries, textEntry{key: []byte(key), val: val})
	}
	// jq evaluates every entry and keeps the last of a key; an entry
	// dropped here could have failed, so a repeated key is left to gojq.
	slices.SortStableFunc(e.entries, func(a, b textEntry) int { return bytes.Compare(a.key, b.key) })
	for i := 1; i < len(e.entries); i++ {
		if bytes.Equal(e.entries[i-1].key, e.entries[i].key) {
			return nil
		}
	}
	return e
}

// value compiles an expression that yields one value.
func (c *textCompiler) value(q *gojq.Query) *textExpr {
	if isConstQuery(q) {
		text, ok := constText(q, c.pipe)
		if !ok {
			return nil
		}
		return &textExpr{kind: textConst, konst: text}
	}
	if o := c.obj(q); o != nil {
		if o.kind == textIdentity || hasIdentity(o) {
			c.recordKeys = true
		}
		return o
	}
	if path, ok := pathOf(q); ok {
		c.notePath(path)
		return &textExpr{kind: textPath, path: path}
	}
	if q.Op == gojq.OpAdd && len(q.Patterns) == 0 && len(q.FuncDefs) == 0 {
		l, r := c.value(q.Left), c.value(q.Right)
		if l == nil || r == nil {
			return nil
		}
		return &textExpr{kind: textPlus, l: l, r: r}
	}
	if t := plainTerm(q); t != nil && t.Type == gojq.TermTypeQuery {
		return c.value(t.Query)
	}
	return nil
}

// hasIdentity reports whether an object expression copies "." whole.
func hasIdentity(e *textExpr) bool {
	switch e.kind {
	case textIdentity:
		return true
	case textAdd:
		return hasIdentity(e.l) || hasIdentity(e.r)
	}
	return false
}

// notePath marks the program as reading a record key when path starts
// at one.
func (c *textCompiler) notePath(path [][]byte) {
	for _, k := range recordKeyNames {
		if bytes.Equal(path[0], k) {
			c.recordKeys = true
		}
	}
}

// pathOf reads .k.k2... (names, or strings without interpolation).
func pathOf(q *gojq.Query) ([][]byte, bool) {
	if q == nil || q.Op != 0 || q.Term == nil || len(q.Patterns) > 0 || len(q.FuncDefs) > 0 || q.Term.Type != gojq.TermTypeIndex {
		return nil, false
	}
	name, ok := indexName(q.Term.Index)
	if !ok {
		return nil, false
	}
	path := [][]byte{name}
	for _, s := range q.Term.SuffixList {
		if s.Index == nil || s.Iter || s.Optional {
			return nil, false
		}
		if name, ok = indexName(s.Index); !ok {
			return nil, false
		}
		path = append(path, name)
	}
	return path, true
}

func indexName(ix *gojq.Index) ([]byte, bool) {
	switch {
	case ix == nil || ix.IsSlice || ix.Start != nil || ix.End != nil:
		return nil, false
	case ix.Name != "":
		return []byte(ix.Name), true
	case ix.Str != nil && ix.Str.Queries == nil:
		return []byte(ix.Str.Str), true
	}
	return nil, false
}

// isConstQuery reports whether q's value does not depend on the input.
func isConstQuery(q *gojq.Query) bool {
	if q == nil || len(q.Patterns) > 0 || len(q.FuncDefs) > 0 {
		return false
	}
	if q.Op != 0 {
		// 1 + 2, "a" * 2: gojq computes it once (constText), and one
		// that yields no value, several or an error is left to it. Not
		// the assignments (=, |=, +=, //=, ...): they are paths into
		// ".", which constText's null input would let pass.
		return q.Op >= gojq.OpPipe && q.Op <= gojq.OpAlt && isConstQuery(q.Left) && isConstQuery(q.Right)
	}
	t := q.Term
	if t == nil || len(t.SuffixList) > 0 {
		return false
	}
	switch t.Type {
	case gojq.TermTypeNull, gojq.TermTypeTrue, gojq.TermTypeFalse, gojq.TermTypeNumber:
		return true
	case gojq.TermTypeString:
		return t.Str != nil && t.Str.Queries == nil
	case gojq.TermTypeFunc:
		return t.Func.Name == "$pipe" && len(t.Func.Args) == 0
	case gojq.TermTypeUnary:
		return isConstQuery(&gojq.Query{Term: t.Unary.Term})
	case gojq.TermTypeQuery:
		return isConstQuery(t.Query)
	case gojq.TermTypeArray:
		return t.Array.Query == nil || isConstList(t.Array.Query)
	case gojq.TermTypeObject:
		for _, kv := range t.Object.KeyVals {
			if kv.Val == nil || (kv.Key == "" || kv.Key[0] == '$') && (kv.KeyString == nil || kv.KeyString.Queries != nil) || !isConstQuery(kv.Val) {
				return false
			}
		}
		return true
	}
	return false
}

// isConstList is isConstQuery for an array's elements: e1, e2, ...
func isConstList(q *gojq.Query) bool {
	if q.Op == gojq.OpComma && len(q.Patterns) == 0 && len(q.FuncDefs) == 0 {
		return isConstList(q.Left) && isConstList(q.Right)
	}
	return isConstQuery(q)
}

// constText evaluates a constant once, with gojq, as the decoded path
// would, and returns its canonical text; false unless it yields exactly
// one value that has a canonical text.
func constText(q *gojq.Query, pipe string) ([]byte, bool) {
	code, err := gojq.Compile(q, gojq.WithVariables([]string{"$pipe"}))
	if err != nil {
		return nil, false
	}
	iter := code.RunWithContext(context.Background(), nil, pipe)
	v, ok := iter.Next()
	if !ok {
		return nil, false
	}
	if _, isErr := v.(error); isErr {
		return nil, false
	}
	if _, more := iter.Next(); more {
		return nil, false
	}
	text, err := engine.AppendCanonical(nil, normalize(v))
	if err != nil {
		return nil, false
	}
	return text, true
}

// textRun is the text path's state for one goroutine: buffers reused
// from one record to the next.
type textRun struct {
	p   *textProgram
	mem []textMember // the objects of one record's evaluation
	buf []byte       // record keys' and nested objects' text
}

var (
	nullText = []byte("null")
	trueText = []byte("true")
)

// PrepareRecord implements engine.RecordPreparer.
func (r *textRun) PrepareRecord(rec *engine.Record, arena []byte) (engine.Prepared, []byte, bool) {
	r.mem, r.buf = r.mem[:0], r.buf[:0]
	cur, ok := r.record(rec)
	return r.run(cur, ok, arena)
}

// PrepareText implements engine.RecordPreparer: the entity is text's
// members, with no record keys.
func (r *textRun) PrepareText(text []byte, arena []byte) (engine.Prepared, []byte, bool) {
	r.mem, r.buf = r.mem[:0], r.buf[:0]
	cur, ok := r.members(text)
	return r.run(cur, ok, arena)
}

// run runs the program's steps on cur and writes the result.
func (r *textRun) run(cur []textMember, ok bool, arena []byte) (engine.Prepared, []byte, bool) {
	for i := 0; ok && i < len(r.p.steps); i++ {
		cur, ok = r.step(&r.p.steps[i], cur)
	}
	if !ok {
		return engine.Prepared{}, arena, false
	}
	return r.output(cur, arena)
}

// record makes the members of rec's entity: its stored body's members
// (sorted: the body is canonical) and, when the program can see them,
// the keys a record adds.
func (r *textRun) record(rec *engine.Record) ([]textMember, bool) {
	body, ok := r.members(rec.Body)
	if !ok || !r.p.recordKeys {
		return body, ok
	}
	// The keys as the record shows them (engine.Record.AppendJSON of an
	// empty body writes them, sorted).
	keys := engine.Record{Offset: rec.Offset, TS: rec.TS, Previous: rec.Previous, HasPrev: rec.HasPrev, Hash: rec.Hash}
	start := len(r.buf)
	r.buf = keys.AppendJSON(r.buf)
	added, ok := r.members(r.buf[start:])
	if !ok {
		return nil, false
	}
	return r.merge(body, added), true
}

// merge returns a and b merged by key, b's member winning for a key in
// both (jq's object addition); both are sorted with one member per key.
func (r *textRun) merge(a, b []textMember) []textMember {
	start := len(r.mem)
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := bytes.Compare(a[i].key, b[j].key); {
		case c < 0:
			r.mem = append(r.mem, a[i])
			i++
		case c > 0:
			r.mem = append(r.mem, b[j])
			j++
		default:
			r.mem = append(r.mem, b[j])
			i++
			j++
		}
	}
	r.mem = append(r.mem, a[i:]...)
	r.mem = append(r.mem, b[j:]...)
	return r.mem[start:len(r.mem):len(r.mem)]
}

func (r *textRun) step(s *textStep, cur []textMember) ([]textMember, bool) {
	if s.obj != nil {
		return r.object(s.obj, cur)
	}
	start := len(r.mem)
	d := 0
	for _, m := range cur {
		for d < len(s.del) && bytes.Compare(s.del[d], m.key) < 0 {
			d++
		}
		if d < len(s.del) && bytes.Equal(s.del[d], m.key) {
			continue
		}
		r.mem = append(r.mem, m)
	}
	return r.mem[start:len(r.mem):len(r.mem)], true
}

// object evaluates an object expression against the current object.
func (r *textRun) object(e *textExpr, cur []textMember) ([]textMember, bool) {
	switch e.kind {
	case textIdentity:
		return cur, true
	case textAdd:
		l, ok := r.object(e.l, cur)
		if !ok {
			return nil, false
		}
		rt, ok := r.object(e.r, cur)
		if !ok {
			return nil, false
		}
		return r.merge(l, rt), true
	case textObject:
		// Values first (they may add nested objects' members to r.mem),
		// then this object's members in one run.
		var stack [16]textMember
		vals := stack[:0]
		for i := range e.entries {
			v, ok := r.value(e.entries[i].val, cur)
			if !ok {
				return nil, false
			}
			vals = append(vals, textMember{e.entries[i].key, v})
		}
		start := len(r.mem)
		r.mem = append(r.mem, vals...)
		return r.mem[start:len(r.mem):len(r.mem)], true
	}
	return nil, false
}

// value evaluates a value expression to canonical text.
func (r *textRun) value(e *textExpr, cur []textMember) ([]byte, bool) {
	switch e.kind {
	case textConst:
		return e.konst, true
	case textPath:
		return r.path(e.path, cur)
	case textPlus:
		l, ok := r.value(e.l, cur)
		if !ok {
			return nil, false
		}
		rt, ok := r.value(e.r, cur)
		if !ok {
			return nil, false
		}
		return r.plus(l, rt)
	}
	members, ok := r.object(e, cur)
	if !ok {
		return nil, false
	}
	start := len(r.buf)
	r.buf = appendMembers(r.buf, members, false)
	return r.buf[start:len(r.buf):len(r.buf)], true
}

// plus is jq's a + b where the text path can be sure of it: null and
// another value that is not a number, two strings (canonical texts of valid UTF-8 concatenate
// to the canonical text of the concatenation) or two objects (merged, b
// winning); false for numbers, arrays and mixed types.
func (r *textRun) plus(a, b []byte) ([]byte, bool) {
	switch {
	case isNumberText(a) || isNumberText(b):
		return nil, false // gojq parses a number it adds, even to null
	case bytes.Equal(a, nullText):
		return b, true
	case bytes.Equal(b, nullText):
		return a, true
	case a[0] == '"' && b[0] == '"':
		start := len(r.buf)
		r.buf = append(r.buf, a[:len(a)-1]...)
		r.buf = append(r.buf, b[1:]...)
		return r.buf[start:len(r.buf):len(r.buf)], true
	case a[0] == '{' && b[0] == '{':
		am, ok := r.members(a)
		if !ok {
			return nil, false
		}
		bm, ok := r.members(b)
		if !ok {
			return nil, false
		}
		merged := r.merge(am, bm)
		start := len(r.buf)
		r.buf = appendMembers(r.buf, merged, false)
		return r.buf[start:len(r.buf):len(r.buf)], true
	}
	return nil, false
}

func isNumberText(v []byte) bool { return v[0] == '-' || '0' <= v[0] && v[0] <= '9' }

// members lists the members of a canonical object's text (sorted, one
// per key).
func (r *textRun) members(obj []byte) ([]textMember, bool) {
	start := len(r.mem)
	err := engine.ScanRawObject(obj, func(key, val []byte) error {
		r.mem = append(r.mem, textMember{key, val})
		return nil
	})
	return r.mem[start:len(r.mem):len(r.mem)], err == nil
}

// path looks .k.k2... up: null where a name is missing or a value on the
// way is null; false (jq's error) where one is neither object nor null.
func (r *textRun) path(path [][]byte, cur []textMember) ([]byte, bool) {
	i, found := slices.BinarySearchFunc(cur, path[0], func(m textMember, k []byte) int { return bytes.Compare(m.key, k) })
	if !found {
		return nullText, true
	}
	v := cur[i].val
	for _, name := range path[1:] {
		switch {
		case bytes.Equal(v, nullText):
			continue
		case len(v) == 0 || v[0] != '{':
			return nil, false
		}
		var got []byte
		err := engine.ScanRawObject(v, func(key, val []byte) error {
			if got == nil && bytes.Equal(key, name) {
				got = val
			}
			return nil
		})
		if err != nil {
			return nil, false
		}
		if got == nil {
			got = nullText
		}
		v = got
	}
	return v, true
}

// appendMembers writes an object's members (sorted, one per key) as
// canonical text; at the root, reserved keys are left out as
// engine.Prepare leaves them out.
func appendMembers(dst []byte, members []textMember, root bool) []byte {
	dst = append(dst, '{')
	n := 0
	for _, m := range members {
		if root && len(m.key) > 0 && m.key[0] == '_' && string(m.key) != "_id" && (string(m.key) != "_deleted" || !bytes.Equal(m.val, trueText)) {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = engine.AppendStringBytes(dst, m.key)
		dst = append(dst, ':')
		dst = append(dst, m.val...)
	}
	return append(dst, '}')
}

// output writes the program's result as the stored form, as
// engine.PrepareAppend would; false when its _id is not a non-empty
// string (the decoded path then reports the error).
func (r *textRun) output(members []textMember, arena []byte) (engine.Prepared, []byte, bool) {
	var id, deleted, filtered []byte
	for _, m := range members {
		if len(m.key) == 0 || m.key[0] != '_' {
			continue
		}
		switch string(m.key) {
		case "_id":
			id = m.val
		case "_deleted":
			deleted = m.val
		case "_filtered":
			filtered = m.val
		}
	}
	if len(id) < 3 || id[0] != '"' {
		return engine.Prepared{}, arena, false
	}
	var ids string
	if bytes.IndexByte(id, '\\') < 0 {
		ids = string(id[1 : len(id)-1])
	} else {
		v, err := engine.DecodeValue(id)
		s, isString := v.(string)
		if err != nil || !isString || s == "" {
			return engine.Prepared{}, arena, false
		}
		ids = s
	}
	start := len(arena)
	arena = appendMembers(arena, members, true)
	body := arena[start:len(arena):len(arena)]
	return engine.Prepared{
		ID:       ids,
		Deleted:  bytes.Equal(deleted, trueText),
		Filtered: bytes.Equal(filtered, trueText),
		Body:     body,
		Hash:     engine.HashBytes(body),
	}, arena, true
}
