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
func PrepareRaw(arena []byte, raw []byte) (Prepared, []byte, error) {
	var s PrepareScratch
	return s.PrepareRaw(arena, raw)
}

// PrepareScratch keeps PrepareRaw's working memory between calls; use one
// per goroutine.
type PrepareScratch struct {
	members [][]rawMember
}

// PrepareRaw is the package function PrepareRaw reusing s's memory.
func (s *PrepareScratch) PrepareRaw(arena []byte, raw []byte) (Prepared, []byte, error) {
	c := rawCanon{data: raw, scratch: s.members}
	defer func() { s.members = c.scratch }()
	c.skipSpace()
	if c.pos >= len(c.data) || c.data[c.pos] != '{' {
		if _, err := DecodeValue(raw); err != nil {
			return Prepared{}, arena, err
		}
		v, _ := DecodeValue(raw)
		return Prepared{}, arena, fmt.Errorf("entity is %s, not a JSON object", TypeName(v))
	}
	start := len(arena)
	c.dst = arena
	var p rawRoot
	if err := c.object(0, &p); err != nil {
		return Prepared{}, arena[:start], err
	}
	c.skipSpace()
	if c.pos != len(c.data) {
		return Prepared{}, arena[:start], c.errorf("unexpected %q after top-level value", c.data[c.pos])
	}
	if !p.hasID {
		return Prepared{}, arena[:start], ErrNoID
	}
	arena = c.dst
	body := arena[start:len(arena):len(arena)]
	p.Body = body
	p.Hash = HashBytes(body)
	return p.Prepared, arena, nil
}

type rawCanon struct {
	data []byte
	pos  int
	dst  []byte
	// scratch holds a member list per nesting depth, reused across
	// objects at the same depth.
	scratch [][]rawMember
}

// rawRoot collects what the root object tells about the entity.
type rawRoot = struct {
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

type rawMember struct {
	key        []byte // the decoded key; the raw bytes when they need no decoding
	verbatim   bool   // key can be written as is, between quotes
	start, end int    // value span in data
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
	c.skipSpace()
	if c.pos < len(c.data) && c.data[c.pos] == '}' {
		c.pos++
	} else {
		for {
			c.skipSpace()
			if c.pos >= len(c.data) || c.data[c.pos] != '"' {
				return c.errorf("expected object key string")
			}
			kstart := c.pos
			if err := c.skipValue(depth + 1); err != nil {
				return err
			}
			m := rawMember{key: c.data[kstart+1 : c.pos-1]}
			if plainString(m.key) {
				m.verbatim = true
			} else {
				sub := rawCanon{data: c.data, pos: kstart}
				k, err := sub.readString()
				if err != nil {
					return err
				}
				m.key = []byte(k)
			}
			c.skipSpace()
			if c.pos >= len(c.data) || c.data[c.pos] != ':' {
				return c.errorf("expected ':' after object key")
			}
			c.pos++
			c.skipSpace()
			start := c.pos
			if err := c.skipValue(depth + 1); err != nil {
				return err
			}
			m.start, m.end = start, c.pos
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
	}
	// The last of duplicate keys wins, as in a decoded map.
	slices.SortStableFunc(members, func(a, b rawMember) int { return bytes.Compare(a.key, b.key) })
	end := c.pos
	c.dst = append(c.dst, '{')
	first := true
	for i, m := range members {
		if i+1 < len(members) && bytes.Equal(members[i+1].key, m.key) {
			continue
		}
		val := c.data[m.start:m.end]
		if root != nil && len(m.key) > 0 && m.key[0] == '_' {
			switch string(m.key) {
			case "_id":
				if val[0] != '"' {
					v, _ := DecodeValue(val)
					return fmt.Errorf("entity _id is %s, not a non-empty string", TypeName(v))
				}
				sub := rawCanon{data: val}
				id, err := sub.readString()
				if err != nil {
					return err
				}
				if id == "" {
					return fmt.Errorf("entity _id is a string, not a non-empty string")
				}
				root.ID, root.hasID = id, true
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
		if m.verbatim {
			c.dst = append(c.dst, '"')
			c.dst = append(c.dst, m.key...)
			c.dst = append(c.dst, '"', ':')
		} else {
			c.dst = appendString(c.dst, string(m.key))
			c.dst = append(c.dst, ':')
		}
		if err := c.value(m.start, m.end, depth+1); err != nil {
			return err
		}
	}
	c.dst = append(c.dst, '}')
	c.pos = end
	return nil
}

// value canonicalizes the validated value data[start:end] into c.dst.
func (c *rawCanon) value(start, end, depth int) error {
	switch b := c.data[start]; {
	case b == '{':
		save := c.pos
		c.pos = start
		err := c.object(depth, nil)
		c.pos = save
		return err
	case b == '[':
		c.dst = append(c.dst, '[')
		d := decoder{data: c.data[:end], pos: start + 1}
		d.skipSpace()
		if d.data[d.pos] == ']' {
			c.dst = append(c.dst, ']')
			return nil
		}
		for first := true; ; first = false {
			d.skipSpace()
			es := d.pos
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			if !first {
				c.dst = append(c.dst, ',')
			}
			if err := c.value(es, d.pos, depth+1); err != nil {
				return err
			}
			d.skipSpace()
			if d.data[d.pos] == ']' {
				c.dst = append(c.dst, ']')
				return nil
			}
			d.pos++ // ,
		}
	case b == '"':
		if plainString(c.data[start+1 : end-1]) {
			c.dst = append(c.dst, c.data[start:end]...)
			return nil
		}
		d := decoder{data: c.data, pos: start}
		str, err := d.string()
		if err != nil {
			return err
		}
		c.dst = appendString(c.dst, str)
		return nil
	default: // number or literal: verbatim
		c.dst = append(c.dst, c.data[start:end]...)
		return nil
	}
}

// plainString reports whether a (validated) string's raw bytes are
// already canonical: no escapes and valid UTF-8.
func plainString(raw []byte) bool {
	ascii := true
	for _, b := range raw {
		if b == '\\' {
			return false
		}
		if b >= utf8.RuneSelf {
			ascii = false
		}
	}
	return ascii || utf8.Valid(raw)
}

// readString decodes the string at c.pos with the decoder's rules.
func (c *rawCanon) readString() (string, error) {
	d := decoder{data: c.data, pos: c.pos}
	s, err := d.string()
	c.pos = d.pos
	return s, err
}

// skipValue validates the value at c.pos and moves past it, without
// allocating.
func (c *rawCanon) skipValue(depth int) error {
	d := decoder{data: c.data, pos: c.pos}
	err := d.skip(depth)
	c.pos = d.pos
	return err
}
