package engine

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf8"
)

// PrepareRaw is PrepareAppend for an entity still in JSON text: it
// produces the same Prepared (canonical body, hash, flags) without
// building the map, by sorting each object's members by key and copying
// numbers, literals and escape-free strings verbatim. A pipe with no
// transforms and a dataset sink uses it when its source can hand over raw
// values (see RawReader); everything it accepts, DecodeEntity accepts, and
// the result is byte-identical to Prepare(DecodeEntity(raw)) (FuzzPrepareRaw
// checks this).
//
// It reads the text once: each value is validated and written in its
// canonical form as it is read; an object's members are written in the
// order they come and, when their keys are not already in order (or
// repeat, or are reserved root keys), rewritten sorted from a copy.
func PrepareRaw(arena []byte, raw []byte) (Prepared, []byte, error) {
	var s PrepareScratch
	return s.PrepareRaw(arena, raw)
}

// PrepareScratch keeps PrepareRaw's working memory between calls; use one
// per goroutine.
type PrepareScratch struct {
	members [][]rawMember
	tmp     []byte
}

// PrepareRaw is the package function PrepareRaw reusing s's memory.
func (s *PrepareScratch) PrepareRaw(arena []byte, raw []byte) (Prepared, []byte, error) {
	start := len(arena)
	var p rawRoot
	grown, err := s.object(arena, raw, &p)
	if err != nil {
		return Prepared{}, arena, err
	}
	if !p.hasID {
		return Prepared{}, arena[:start], ErrNoID
	}
	arena = grown
	body := arena[start:len(arena):len(arena)]
	p.Body = body
	p.Hash = HashBytes(body)
	return p.Prepared, arena, nil
}

// CanonicalObject appends the canonical text of the JSON object raw to
// dst, every key kept (reserved ones too): AppendCanonical of what
// DecodeEntity makes of raw, the last of duplicate keys winning, without
// the map.
func (s *PrepareScratch) CanonicalObject(dst []byte, raw []byte) ([]byte, error) {
	return s.object(dst, raw, nil)
}

// object appends the canonical text of the JSON object raw to dst; root,
// when not nil, receives _id and the flags and makes reserved keys drop
// out (see rawCanon.object). On an error dst is returned as it was.
func (s *PrepareScratch) object(dst []byte, raw []byte, root *rawRoot) ([]byte, error) {
	c := rawCanon{data: raw, scratch: s.members, tmp: s.tmp}
	defer func() { s.members, s.tmp = c.scratch, c.tmp }()
	c.skipSpace()
	if c.pos >= len(c.data) || c.data[c.pos] != '{' {
		v, err := DecodeValue(raw)
		if err != nil {
			return dst, err
		}
		return dst, fmt.Errorf("entity is %s, not a JSON object", TypeName(v))
	}
	start := len(dst)
	c.dst = dst
	if err := c.object(0, root); err != nil {
		return dst[:start], err
	}
	c.skipSpace()
	if c.pos != len(c.data) {
		return dst[:start], c.errorf("unexpected %q after top-level value", c.data[c.pos])
	}
	return c.dst, nil
}

type rawCanon struct {
	data []byte
	pos  int
	dst  []byte
	// scratch holds a member list per nesting depth, reused across
	// objects at the same depth.
	scratch [][]rawMember
	// tmp holds an object's members while they are rewritten sorted.
	tmp []byte
}

// rawRoot collects what the root object tells about the entity.
type rawRoot struct {
	Prepared
	hasID bool
}

func (c *rawCanon) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: c.pos, Msg: fmt.Sprintf(format, args...)}
}

func (c *rawCanon) skipSpace() {
	for c.pos < len(c.data) {
		switch c.data[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// rawMember is a member of an object being canonicalized: its decoded key
// and where its canonical `"key":value` text was written in dst.
type rawMember struct {
	key        []byte // the raw key bytes when they need no decoding, else the decoded key
	start, end int    // `"key":value` in dst
	val        int    // where value starts in dst
}

// object canonicalizes the object at c.pos into c.dst. root, when not
// nil, receives _id and the flags and makes reserved keys drop out.
func (c *rawCanon) object(depth int, root *rawRoot) error {
	if depth > maxDepth {
		return c.errorf("nesting deeper than %d", maxDepth)
	}
	c.pos++ // {
	for len(c.scratch) <= depth {
		c.scratch = append(c.scratch, make([]rawMember, 0, 16))
	}
	members := c.scratch[depth][:0]
	defer func() { c.scratch[depth] = members[:0] }()
	objStart := len(c.dst)
	c.dst = append(c.dst, '{')
	inOrder := true // keys strictly ascending so far: nothing to rewrite
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == '}' {
		c.pos++
		c.dst = append(c.dst, '}')
		return nil
	}
	for {
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != '"' {
			return c.errorf("expected object key string")
		}
		if len(members) > 0 {
			c.dst = append(c.dst, ',')
		}
		m := rawMember{start: len(c.dst)}
		kstart := c.pos + 1
		end, flags := scanString(c.data, kstart)
		if flags&(strEscape|strControl|strOpen) == 0 && (flags&strNonASCII == 0 || utf8.Valid(c.data[kstart:end])) {
			m.key = c.data[kstart:end]
			c.dst = append(c.dst, c.data[kstart-1:end+1]...)
			c.pos = end + 1
		} else {
			d := decoder{data: c.data, pos: c.pos}
			k, err := d.string()
			c.pos = d.pos
			if err != nil {
				return err
			}
			m.key = []byte(k)
			c.dst = appendString(c.dst, k)
		}
		c.skipSpace()
		if c.pos >= len(c.data) || c.data[c.pos] != ':' {
			return c.errorf("expected ':' after object key")
		}
		c.pos++
		c.dst = append(c.dst, ':')
		c.skipSpace()
		m.val = len(c.dst)
		if err := c.value(depth + 1); err != nil {
			return err
		}
		m.end = len(c.dst)
		if inOrder && len(members) > 0 && bytes.Compare(members[len(members)-1].key, m.key) >= 0 {
			inOrder = false
		}
		if root != nil && len(m.key) > 0 && m.key[0] == '_' && !(len(m.key) == 3 && string(m.key) == "_id") {
			inOrder = false // reserved: decided below, after duplicates
		}
		members = append(members, m)
		c.skipSpace()
		if c.pos >= len(c.data) {
			return c.errorf("unexpected end of input in object")
		}
		if c.data[c.pos] == ',' {
			c.pos++
			continue
		}
		if c.data[c.pos] == '}' {
			c.pos++
			break
		}
		return c.errorf("expected ',' or '}' in object")
	}
	if root != nil {
		// The last of duplicate _id keys wins, as in a decoded map.
		for i := len(members) - 1; i >= 0; i-- {
			if string(members[i].key) == "_id" {
				if err := root.setID(c.dst[members[i].val:members[i].end]); err != nil {
					return err
				}
				break
			}
		}
	}
	if inOrder {
		c.dst = append(c.dst, '}')
		return nil
	}
	// Rewrite the members sorted, from a copy; the last of duplicate keys
	// wins, as in a decoded map.
	c.tmp = append(c.tmp[:0], c.dst[objStart:]...)
	sortMembers(members)
	c.dst = append(c.dst[:objStart], '{')
	first := true
	for i, m := range members {
		if i+1 < len(members) && bytes.Equal(members[i+1].key, m.key) {
			continue
		}
		val := c.tmp[m.val-objStart : m.end-objStart]
		if root != nil && len(m.key) > 0 && m.key[0] == '_' {
			switch string(m.key) {
			case "_id":
			case "_deleted":
				if string(val) != "true" {
					continue
				}
				root.Deleted = true
			case "_filtered":
				root.Filtered = string(val) == "true"
				continue
			default:
				continue
			}
		}
		if !first {
			c.dst = append(c.dst, ',')
		}
		first = false
		c.dst = append(c.dst, c.tmp[m.start-objStart:m.end-objStart]...)
	}
	c.dst = append(c.dst, '}')
	return nil
}

// sortMembers sorts members by key, keeping the order of equal keys:
// insertion sort for the few members most objects have.
func sortMembers(ms []rawMember) {
	if len(ms) > 24 {
		slices.SortStableFunc(ms, func(a, b rawMember) int { return bytes.Compare(a.key, b.key) })
		return
	}
	for i := 1; i < len(ms); i++ {
		m := ms[i]
		j := i
		for ; j > 0 && bytes.Compare(ms[j-1].key, m.key) > 0; j-- {
			ms[j] = ms[j-1]
		}
		ms[j] = m
	}
}

// setID takes the root's _id from its canonical value text.
func (p *rawRoot) setID(val []byte) error {
	if val[0] != '"' {
		v, _ := DecodeValue(val)
		return fmt.Errorf("entity _id is %s, not a non-empty string", TypeName(v))
	}
	d := decoder{data: val}
	id, err := d.string()
	if err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("entity _id is a string, not a non-empty string")
	}
	p.ID, p.hasID = id, true
	return nil
}

// value canonicalizes the value at c.pos into c.dst and moves past it.
func (c *rawCanon) value(depth int) error {
	if c.pos >= len(c.data) {
		return c.errorf("unexpected end of input")
	}
	if depth > maxDepth {
		return c.errorf("nesting deeper than %d", maxDepth)
	}
	switch b := c.data[c.pos]; {
	case b == '{':
		return c.object(depth, nil)
	case b == '[':
		c.pos++
		c.dst = append(c.dst, '[')
		c.skipSpace()
		if c.pos < len(c.data) && c.data[c.pos] == ']' {
			c.pos++
			c.dst = append(c.dst, ']')
			return nil
		}
		for {
			c.skipSpace()
			if err := c.value(depth + 1); err != nil {
				return err
			}
			c.skipSpace()
			if c.pos >= len(c.data) {
				return c.errorf("unexpected end of input in array")
			}
			switch c.data[c.pos] {
			case ',':
				c.pos++
				c.dst = append(c.dst, ',')
			case ']':
				c.pos++
				c.dst = append(c.dst, ']')
				return nil
			default:
				return c.errorf("expected ',' or ']' in array")
			}
		}
	case b == '"':
		start := c.pos
		end, flags := scanString(c.data, start+1)
		if flags&(strEscape|strControl|strOpen) == 0 && (flags&strNonASCII == 0 || utf8.Valid(c.data[start+1:end])) {
			c.dst = append(c.dst, c.data[start:end+1]...)
			c.pos = end + 1
			return nil
		}
		d := decoder{data: c.data, pos: start}
		str, err := d.string()
		c.pos = d.pos
		if err != nil {
			return err
		}
		c.dst = appendString(c.dst, str)
		return nil
	default: // number or literal: verbatim
		d := decoder{data: c.data, pos: c.pos}
		start := c.pos
		err := d.skip(depth)
		c.pos = d.pos
		if err != nil {
			return err
		}
		c.dst = append(c.dst, c.data[start:c.pos]...)
		return nil
	}
}
