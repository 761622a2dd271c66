package pipes

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// valueStream splits a byte stream into top-level JSON values without
// decoding them: either the elements of one top-level array, or a sequence
// of values (NDJSON or concatenated JSON). It only tracks strings and
// nesting, so each value is then decoded exactly once by engine.DecodeValue.
//
// In line mode (NDJSON declared by the source's config) it does not look
// into the values at all: each non-blank line, without the whitespace
// around it, is one value. That is a search for the next newline (a
// vector instruction's work) instead of a walk of every byte; whether a
// line really is one JSON value is then checked where the value is
// decoded, or known without decoding where its text is byte for byte the
// text a stored version was decoded from (a lazy, unchanged entity).
type valueStream struct {
	r       *bufio.Reader
	buf     []byte
	inArray bool
	started bool
	done    bool
	lines   bool
	offset  int64 // bytes consumed, for error messages
	count   int
	line    int // in line mode, the line of the last value (from 1)
}

func newValueStream(r io.Reader) *valueStream {
	return &valueStream{r: bufio.NewReaderSize(r, 256<<10)}
}

// newLineStream returns a valueStream in line mode: one value per line.
func newLineStream(r io.Reader) *valueStream {
	s := newValueStream(r)
	s.lines = true
	return s
}

// nextLine is Next in line mode: the next non-blank line without the
// JSON whitespace around it.
func (s *valueStream) nextLine() ([]byte, error) {
	for {
		b, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: collect it.
			s.buf = append(s.buf[:0], b...)
			for err == bufio.ErrBufferFull {
				b, err = s.r.ReadSlice('\n')
				s.buf = append(s.buf, b...)
			}
			b = s.buf
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(b) == 0 {
			s.done = true
			return nil, io.EOF
		}
		s.offset += int64(len(b))
		s.line++
		if v := trimSpace(b); len(v) > 0 {
			s.count++
			return v, nil
		}
		if err == io.EOF {
			s.done = true
			return nil, io.EOF
		}
	}
}

// trimSpace drops JSON whitespace from both ends of b.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func (s *valueStream) readByte() (byte, error) {
	c, err := s.r.ReadByte()
	if err == nil {
		s.offset++
	}
	return c, err
}

func (s *valueStream) skipSpace() (byte, error) {
	for {
		c, err := s.readByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

// Next returns the raw bytes of the next value (valid until the next call),
// or io.EOF.
func (s *valueStream) Next() ([]byte, error) {
	if s.done {
		return nil, io.EOF
	}
	if s.lines {
		return s.nextLine()
	}
	c, err := s.skipSpace()
	if !s.started {
		s.started = true
		if err == io.EOF {
			s.done = true
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		if c == '[' {
			s.inArray = true
			if c, err = s.skipSpace(); err != nil {
				return nil, s.unexpectedEOF(err)
			}
			if c == ']' {
				return nil, s.finishArray()
			}
		}
	} else if s.inArray {
		if err != nil {
			return nil, s.unexpectedEOF(err)
		}
		switch c {
		case ']':
			return nil, s.finishArray()
		case ',':
			if c, err = s.skipSpace(); err != nil {
				return nil, s.unexpectedEOF(err)
			}
		default:
			return nil, fmt.Errorf("byte %d: expected ',' or ']' after array element %d, found %q", s.offset, s.count, c)
		}
	} else if err == io.EOF {
		s.done = true
		return nil, io.EOF
	} else if err != nil {
		return nil, err
	}
	s.buf = append(s.buf[:0], c)
	if err := s.readValue(c); err != nil {
		return nil, err
	}
	s.count++
	return s.buf, nil
}

func (s *valueStream) unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("byte %d: unexpected end of input inside the top-level array", s.offset)
	}
	return err
}

func (s *valueStream) finishArray() error {
	s.done = true
	c, err := s.skipSpace()
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("byte %d: unexpected %q after the top-level array", s.offset, c)
}

// readValue reads the rest of a value whose first byte c is already in buf.
func (s *valueStream) readValue(c byte) error {
	switch c {
	case '{', '[':
		// Scan the buffered bytes in a tight loop rather than byte by byte
		// through the reader; state carries across buffer refills. Inside
		// strings, quoteOrBackslash skips eight bytes at a time.
		depth, inStr, esc := 1, false, false
		for depth > 0 {
			if s.r.Buffered() == 0 {
				if _, err := s.r.Peek(1); err != nil {
					return fmt.Errorf("byte %d: unexpected end of input in value %d", s.offset, s.count)
				}
			}
			chunk, _ := s.r.Peek(s.r.Buffered())
			i := 0
			for i < len(chunk) && depth > 0 {
				if inStr {
					if esc {
						esc = false
						i++
						continue
					}
					i += quoteOrBackslash(chunk[i:])
					if i == len(chunk) {
						break
					}
					if chunk[i] == '\\' {
						esc = true
					} else {
						inStr = false
					}
					i++
					continue
				}
				switch chunk[i] {
				case '"':
					inStr = true
				case '{', '[':
					depth++
				case '}', ']':
					depth--
				}
				i++
			}
			s.buf = append(s.buf, chunk[:i]...)
			s.r.Discard(i)
			s.offset += int64(i)
		}
		return nil
	case '"':
		for {
			b, err := s.readByte()
			if err != nil {
				return fmt.Errorf("byte %d: unexpected end of input in a string", s.offset)
			}
			s.buf = append(s.buf, b)
			if b == '\\' {
				e, err := s.readByte()
				if err != nil {
					return fmt.Errorf("byte %d: unexpected end of input in a string", s.offset)
				}
				s.buf = append(s.buf, e)
			} else if b == '"' {
				return nil
			}
		}
	default:
		// A scalar: read until a delimiter, which is left unread.
		for {
			b, err := s.r.Peek(1)
			if err != nil || len(b) == 0 {
				return nil
			}
			switch b[0] {
			case ',', ']', '}', ' ', '\t', '\n', '\r', '[', '{', '"':
				return nil
			}
			s.buf = append(s.buf, b[0])
			s.readByte()
		}
	}
}

// quoteOrBackslash returns the index of the first '"' or '\\' in b, or
// len(b), looking at eight bytes per step.
func quoteOrBackslash(b []byte) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		if m := ((q-ones)&^q | (bs-ones)&^bs) & highs; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if b[i] == '"' || b[i] == '\\' {
			return i
		}
	}
	return i
}
