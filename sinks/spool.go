package sinks

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// idSpool is a list of _ids kept in the order they are added: in memory
// up to max bytes of text, beyond that in an unlinked temporary file
// (os.TempDir). Deletion tracking keeps the _ids it is to delete in one:
// a tenth of a 10M-entity dataset is a million _ids, ~48 MB as Go
// strings, which a run under the 150 MiB default bound cannot hold
// beside the rest.
type idSpool struct {
	n    int
	max  int    // bytes kept in memory (spoolMem; smaller in tests)
	mem  []byte // the _ids not spilled, each after its length (uvarint)
	file *os.File
	w    *bufio.Writer
	// Reading (next): from the file, then from mem at pos.
	r   *bufio.Reader
	pos int
}

// spoolMem is how many bytes of _ids an idSpool keeps in memory.
const spoolMem = 1 << 20

func newIDSpool() *idSpool { return &idSpool{max: spoolMem} }

// add appends an _id; it must not be called once next has been.
func (s *idSpool) add(id string) error {
	s.n++
	s.mem = binary.AppendUvarint(s.mem, uint64(len(id)))
	s.mem = append(s.mem, id...)
	if len(s.mem) < s.max {
		return nil
	}
	if s.file == nil {
		f, err := os.CreateTemp("", "ferry-gone-*")
		if err != nil {
			return fmt.Errorf("more than %d bytes of _ids to delete are kept in a temporary file: %w", s.max, err)
		}
		os.Remove(f.Name()) // unlinked: gone when closed, even after a crash
		s.file, s.w = f, bufio.NewWriterSize(f, 64<<10)
	}
	if _, err := s.w.Write(s.mem); err != nil {
		return fmt.Errorf("writing _ids to delete: %w", err)
	}
	s.mem = s.mem[:0]
	return nil
}

// len returns how many _ids were added.
func (s *idSpool) len() int { return s.n }

// next appends to dst[:0] up to k of the _ids not yet returned, in the
// order they were added, and returns it (empty at the end).
func (s *idSpool) next(k int, dst []string) ([]string, error) {
	dst = dst[:0]
	if s.file != nil && s.r == nil {
		if err := s.w.Flush(); err != nil {
			return dst, fmt.Errorf("writing _ids to delete: %w", err)
		}
		s.r = bufio.NewReaderSize(io.NewSectionReader(s.file, 0, 1<<62), 64<<10)
	}
	var buf []byte
	for len(dst) < k && s.r != nil {
		n, err := binary.ReadUvarint(s.r)
		if err == io.EOF {
			s.r = nil // the file is read: on to mem
			s.file.Close()
			s.file = nil
			break
		}
		if err != nil {
			return dst, fmt.Errorf("reading _ids to delete: %w", err)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(s.r, buf[:n]); err != nil {
			return dst, fmt.Errorf("reading _ids to delete: %w", err)
		}
		dst = append(dst, string(buf[:n]))
	}
	for len(dst) < k && s.r == nil && s.pos < len(s.mem) {
		n, w := binary.Uvarint(s.mem[s.pos:])
		s.pos += w
		dst = append(dst, string(s.mem[s.pos:s.pos+int(n)]))
		s.pos += int(n)
	}
	return dst, nil
}

// close removes the temporary file, if any.
func (s *idSpool) close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}
