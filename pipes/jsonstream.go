package pipes

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// valueStream splits a byte stream into top-level JSON values without
// decoding them: either the elements of one top-level array, or a sequence
// of values (NDJSON or concatenated JSON). It only tracks strings and
// nesting, so each value is then decoded exactly once by engine.DecodeValue.
type valueStream struct {
	r       *bufio.Reader
	buf     []byte
	inArray bool
	started bool
	done    bool
	offset  int64 // bytes consumed, for error messages
	count   int
}

func newValueStream(r io.Reader) *valueStream {
	return &valueStream{r: bufio.NewReaderSize(r, 256<<10)}
}

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
		// through the reader; state carries across buffer refills.
		depth, inStr, esc := 1, false, false
		for depth > 0 {
			if s.r.Buffered() == 0 {
				if _, err := s.r.Peek(1); err != nil {
					return fmt.Errorf("byte %d: unexpected end of input in value %d", s.offset, s.count)
				}
			}
			chunk, _ := s.r.Peek(s.r.Buffered())
			i := 0
			for ; i < len(chunk) && depth > 0; i++ {
				b := chunk[i]
				if inStr {
					switch {
					case esc:
						esc = false
					case b == '\\':
						esc = true
					case b == '"':
						inStr = false
					}
					continue
				}
				switch b {
				case '"':
					inStr = true
				case '{', '[':
					depth++
				case '}', ']':
					depth--
				}
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
