package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Entity is one JSON object flowing through Ferry. Values are nil, bool,
// json.Number, string, []any and map[string]any (see DecodeValue). Root keys
// starting with "_" are reserved; "$" keys are ordinary data.
type Entity = map[string]any

// SyntaxError reports malformed JSON with the byte offset where decoding
// stopped.
type SyntaxError struct {
	Offset int
	Msg    string
}

// Error reports the offset and what was wrong.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 10000

// DecodeValue parses one JSON document into Ferry's value model. Numbers
// become json.Number holding the exact text of the input. Trailing non-space
// bytes are an error, and so is invalid UTF-8 in a string (JSON text must be
// UTF-8; encoding/json would silently replace the bytes with U+FFFD). A
// \u escape of a lone surrogate, which is valid JSON text, decodes to U+FFFD
// as in encoding/json.
//
// It is a small hand-written recursive-descent parser: entity decoding is on
// every pipe's hot path, and this avoids both reflection and the per-call
// Decoder that UseNumber needs in encoding/json and goccy/go-json
// (BenchmarkDecode compares the three).
func DecodeValue(data []byte) (any, error) {
	d := decoder{data: data}
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected %q after top-level value", d.data[d.pos])
	}
	return v, nil
}

// ErrNoID is returned for an entity without a string _id.
var ErrNoID = errors.New("entity has no _id")

// DecodeEntity parses a JSON object that must carry a string "_id".
func DecodeEntity(data []byte) (Entity, error) {
	v, err := DecodeValue(data)
	if err != nil {
		return nil, err
	}
	return AsEntity(v)
}

// AsEntity checks that v is a JSON object with a non-empty string _id.
func AsEntity(v any) (Entity, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("entity is %s, not a JSON object", TypeName(v))
	}
	id, ok := m["_id"]
	if !ok {
		return nil, ErrNoID
	}
	s, ok := id.(string)
	if !ok {
		return nil, fmt.Errorf("entity _id is %s, not a string", TypeName(id))
	}
	if s == "" {
		return nil, fmt.Errorf("entity _id is empty")
	}
	return m, nil
}

// ID returns the entity's _id, or "" when it has none.
func ID(e Entity) string {
	s, _ := e["_id"].(string)
	return s
}

// IsDeleted reports whether the entity is marked deleted; only a literal
// true counts.
func IsDeleted(e Entity) bool {
	b, _ := e["_deleted"].(bool)
	return b
}

// TypeName names a value's JSON type for error messages.
func TypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, int, int64, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

type decoder struct {
	data []byte
	pos  int
	keys map[string]string // interned object keys; nil: no interning
	// sizes, if set, is how many keys the last object at each depth had:
	// the size hint for the next one there (see Decoder).
	sizes *[sizeDepths]uint8
	room  int // added to the hint of a top-level object
}

// Decoder decodes many entities with the same keys: it interns object keys
// so each distinct key string is allocated once, and makes each object's
// map as large as the last object at the same depth was (entities of one
// source mostly share a shape; a map grown key by key past 8 keys is
// rehashed on the way, a fifth of decoding a REST page of customers). It
// is not safe for concurrent use; give each goroutine its own.
type Decoder struct {
	keys  map[string]string
	sizes [sizeDepths]uint8
}

// sizeDepths is how many levels of nesting Decoder keeps size hints for;
// maxSizeHint caps a hint, so one wide object does not make every later
// one large.
const (
	sizeDepths  = 8
	maxSizeHint = 64
)

// NewDecoder returns a Decoder with an empty key cache.
func NewDecoder() *Decoder { return &Decoder{keys: make(map[string]string, 64)} }

// maxInternedKeys bounds the key cache so documents with unbounded key sets
// (maps keyed by ids) cannot grow it without limit.
const maxInternedKeys = 4096

// DecodeValue is DecodeValue with key interning.
func (dd *Decoder) DecodeValue(data []byte) (any, error) { return dd.decodeRoom(data, 0) }

// decodeRoom is DecodeValue with room for room more keys in a top-level
// object's map (keys the caller adds, e.g. a record's _ts and _updated).
func (dd *Decoder) decodeRoom(data []byte, room int) (any, error) {
	d := decoder{data: data, keys: dd.keys, sizes: &dd.sizes, room: room}
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected %q after top-level value", d.data[d.pos])
	}
	return v, nil
}

// DecodeEntity is DecodeEntity with key interning.
func (dd *Decoder) DecodeEntity(data []byte) (Entity, error) {
	v, err := dd.DecodeValue(data)
	if err != nil {
		return nil, err
	}
	return AsEntity(v)
}

// key reads an object key, interning it when the decoder has a cache.
func (d *decoder) key() (string, error) {
	if d.keys == nil {
		return d.string()
	}
	start := d.pos + 1
	if end, flags := scanString(d.data, start); flags == 0 {
		if k, ok := d.keys[string(d.data[start:end])]; ok {
			d.pos = end + 1
			return k, nil
		}
	}
	k, err := d.string()
	if err == nil && len(d.keys) < maxInternedKeys {
		d.keys[k] = k
	}
	return k, err
}

func (d *decoder) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: d.pos, Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end of input")
	}
	if depth > maxDepth {
		return nil, d.errorf("nesting deeper than %d", maxDepth)
	}
	switch c := d.data[d.pos]; c {
	case '{':
		return d.object(depth)
	case '[':
		return d.array(depth)
	case '"':
		return d.string()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number()
		}
		return nil, d.errorf("unexpected character %q", c)
	}
}

func (d *decoder) literal(word string) error {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return d.errorf("invalid literal, expected %s", word)
	}
	d.pos += len(word)
	return nil
}

func (d *decoder) object(depth int) (any, error) {
	d.pos++ // {
	hint := 8
	if d.sizes != nil && depth < sizeDepths && d.sizes[depth] > 0 {
		hint = int(d.sizes[depth])
	}
	if depth == 0 {
		hint += d.room
	}
	m := make(map[string]any, hint)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.sized(depth, 0)
		return m, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("expected object key string")
		}
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected ':' after object key")
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.sized(depth, len(m))
			return m, nil
		default:
			return nil, d.errorf("expected ',' or '}' in object")
		}
	}
}

// sized records that an object at depth had n keys (the next one's hint).
func (d *decoder) sized(depth, n int) {
	if d.sizes != nil && depth < sizeDepths {
		d.sizes[depth] = uint8(min(n, maxSizeHint))
	}
}

func (d *decoder) array(depth int) (any, error) {
	d.pos++ // [
	a := make([]any, 0, 4)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		d.skipSpace()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return a, nil
		default:
			return nil, d.errorf("expected ',' or ']' in array")
		}
	}
}

func (d *decoder) number() (any, error) {
	start := d.pos
	end, err := d.numberSpan()
	if err != nil {
		return nil, err
	}
	return json.Number(d.data[start:end]), nil
}

// numberSpan validates the number at d.pos, moves past it and returns its
// end.
func (d *decoder) numberSpan() (int, error) {
	p := d.pos
	if p < len(d.data) && d.data[p] == '-' {
		p++
	}
	switch {
	case p < len(d.data) && d.data[p] == '0':
		p++
	case p < len(d.data) && d.data[p] >= '1' && d.data[p] <= '9':
		for p < len(d.data) && d.data[p] >= '0' && d.data[p] <= '9' {
			p++
		}
	default:
		d.pos = p
		return 0, d.errorf("invalid number")
	}
	if p < len(d.data) && d.data[p] == '.' {
		p++
		q := p
		for p < len(d.data) && d.data[p] >= '0' && d.data[p] <= '9' {
			p++
		}
		if p == q {
			d.pos = p
			return 0, d.errorf("invalid number: no digits after '.'")
		}
	}
	if p < len(d.data) && (d.data[p] == 'e' || d.data[p] == 'E') {
		p++
		if p < len(d.data) && (d.data[p] == '+' || d.data[p] == '-') {
			p++
		}
		q := p
		for p < len(d.data) && d.data[p] >= '0' && d.data[p] <= '9' {
			p++
		}
		if p == q {
			d.pos = p
			return 0, d.errorf("invalid number: no digits in exponent")
		}
	}
	d.pos = p
	return p, nil
}

func (d *decoder) string() (string, error) {
	d.pos++ // opening quote
	start := d.pos
	end, flags := scanString(d.data, start)
	switch {
	case flags&strEscape != 0:
		// Decode from the first backslash (the bytes before it are plain
		// or, if not ASCII, validated with the rest).
		d.pos = start + indexBackslash(d.data[start:end])
		return d.slowString(start)
	case flags&strOpen != 0:
		d.pos = end
		return "", d.errorf("unterminated string")
	case flags&strControl != 0:
		d.pos = end
		return "", d.errorf("control character in string")
	}
	s := d.data[start:end]
	d.pos = end + 1
	if flags&strNonASCII != 0 && !utf8.Valid(s) {
		return "", d.invalidUTF8(start, s)
	}
	return string(s), nil
}

// indexBackslash returns the index of the first backslash in b, or len(b).
func indexBackslash(b []byte) int {
	for i, c := range b {
		if c == '\\' {
			return i
		}
	}
	return len(b)
}

// slowString decodes a string containing escapes; d.pos is at the first
// backslash and start at the first byte after the opening quote.
func (d *decoder) slowString(start int) (string, error) {
	buf := make([]byte, 0, d.pos-start+16)
	buf = append(buf, d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			if !utf8.Valid(buf) {
				// Escapes decode to valid UTF-8, so the raw text has the
				// invalid bytes.
				return "", d.invalidUTF8(start, d.data[start:d.pos])
			}
			d.pos++
			return string(buf), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			d.pos++
			continue
		}
		d.pos++
		if d.pos >= len(d.data) {
			break
		}
		e := d.data[d.pos]
		d.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.errorf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
					save := d.pos
					d.pos += 2
					var ok2 bool
					r2, ok2 = d.hex4()
					if !ok2 {
						return "", d.errorf("invalid \\u escape")
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						buf = utf8.AppendRune(buf, dec)
						continue
					}
					d.pos = save
				}
				buf = utf8.AppendRune(buf, utf8.RuneError)
				continue
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", d.errorf("invalid escape \\%c", e)
		}
	}
	return "", d.errorf("unterminated string")
}

// invalidUTF8 reports the first invalid UTF-8 sequence of raw, the string
// text starting at byte start of the input. JSON text must be UTF-8 (RFC
// 8259); replacing the bytes with U+FFFD, as encoding/json does, would
// change data silently.
func (d *decoder) invalidUTF8(start int, raw []byte) error {
	i := 0
	for i < len(raw) {
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		i += size
	}
	d.pos = start + i
	end := min(i+4, len(raw))
	return d.errorf("invalid UTF-8 in string (bytes % x); JSON text must be UTF-8", raw[i:end])
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d.data[d.pos:d.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.pos += 4
	return rune(n), true
}

// AsFloat converts a JSON number (json.Number, or the int and float64
// other decoders produce) to float64.
func AsFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// skip validates the value at d.pos by the same rules as value and moves
// past it without building anything.
func (d *decoder) skip(depth int) error {
	if d.pos >= len(d.data) {
		return d.errorf("unexpected end of input")
	}
	if depth > maxDepth {
		return d.errorf("nesting deeper than %d", maxDepth)
	}
	switch c := d.data[d.pos]; c {
	case '{', '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		d.pos++
		d.skipSpace()
		if d.pos < len(d.data) && d.data[d.pos] == closer {
			d.pos++
			return nil
		}
		for {
			d.skipSpace()
			if c == '{' {
				if d.pos >= len(d.data) || d.data[d.pos] != '"' {
					return d.errorf("expected object key string")
				}
				if err := d.skipString(); err != nil {
					return err
				}
				d.skipSpace()
				if d.pos >= len(d.data) || d.data[d.pos] != ':' {
					return d.errorf("expected ':' after object key")
				}
				d.pos++
				d.skipSpace()
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			d.skipSpace()
			if d.pos >= len(d.data) {
				return d.errorf("unexpected end of input")
			}
			switch d.data[d.pos] {
			case ',':
				d.pos++
			case closer:
				d.pos++
				return nil
			default:
				if c == '{' {
					return d.errorf("expected ',' or '}' in object")
				}
				return d.errorf("expected ',' or ']' in array")
			}
		}
	case '"':
		return d.skipString()
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			_, err := d.numberSpan()
			return err
		}
		return d.errorf("unexpected character %q", c)
	}
}

// skipString validates a string without decoding it.
func (d *decoder) skipString() error {
	d.pos++ // opening quote
	end, flags := scanString(d.data, d.pos)
	if flags&(strEscape|strControl|strOpen) == 0 {
		d.pos = end + 1
		return nil
	}
	if flags&strEscape == 0 {
		d.pos = end
		if flags&strOpen != 0 {
			return d.errorf("unterminated string")
		}
		return d.errorf("control character in string")
	}
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return nil
		case c < 0x20:
			return d.errorf("control character in string")
		case c == '\\':
			d.pos++
			if d.pos >= len(d.data) {
				return d.errorf("unterminated string")
			}
			switch d.data[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				d.pos++
				if _, ok := d.hex4(); !ok {
					return d.errorf("invalid \\u escape")
				}
			default:
				return d.errorf("invalid escape \\%c", d.data[d.pos])
			}
			continue
		}
		d.pos++
	}
	return d.errorf("unterminated string")
}
