package boltstore

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzRunBlock feeds arbitrary bytes, as a corrupt file could hold them,
// to the parsers of run blocks and run descriptions: they must return an
// answer or an error, never panic, and a block the writer made must give
// back every entry.
func FuzzRunBlock(f *testing.F) {
	// A well-formed block of three entries.
	var blk []byte
	keys := [][]byte{[]byte("a"), []byte("abcdefgh-1"), []byte("abcdefgh-2")}
	var ents []byte
	var offs []uint32
	for _, k := range keys {
		offs = append(offs, uint32(len(ents)))
		ents = binary.AppendUvarint(ents, uint64(len(k)))
		ents = append(ents, k...)
		ents = append(ents, 3, 'v', 'a', 'l')
	}
	head := 4 + 12*len(keys)
	blk = binary.BigEndian.AppendUint32(blk, uint32(len(keys)))
	for _, k := range keys {
		blk = binary.BigEndian.AppendUint64(blk, keyPrefix(k))
	}
	for _, o := range offs {
		blk = binary.BigEndian.AppendUint32(blk, o+uint32(head))
	}
	blk = append(blk, ents...)
	f.Add(blk, []byte("abcdefgh-2"))
	f.Add([]byte{0, 0, 0, 9, 1, 2}, []byte("x"))
	f.Add(encodeRunMeta(&runFile{count: 3, min: []byte("a"), max: []byte("b"), bloom: newRecentFilter(1, 0).bloom}), []byte("a"))
	for _, k := range keys {
		if v := blockGet(blk, k); !bytes.Equal(v, []byte("val")) {
			f.Fatalf("well-formed block: %q -> %q", k, v)
		}
	}
	f.Fuzz(func(t *testing.T, b, id []byte) {
		blockGet(b, id)
		n := blockCount(b)
		for i := 0; i < n; i++ {
			blockEntry(b, n, i)
		}
		decodeRunMeta(1, b)
	})
}

// TestBlockEntryHugeKeyLength: a key length near 2^64 in a corrupt block
// must not wrap around the bounds check.
func TestBlockEntryHugeKeyLength(t *testing.T) {
	b := binary.BigEndian.AppendUint32(nil, 1)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint32(b, 16)
	b = binary.AppendUvarint(b, ^uint64(0))
	b = append(b, 1, 'x')
	if k, v := blockEntry(b, 1, 0); k != nil || v != nil {
		t.Fatalf("corrupt entry parsed as %q, %q", k, v)
	}
	if v := blockGet(b, []byte("x")); v != nil {
		t.Fatalf("lookup in a corrupt block found %q", v)
	}
}

// FuzzL0MergeState feeds arbitrary bytes to the parser of the state of a
// merge of level 0 in progress: an answer or an error, never a panic, and
// a state it encoded reads back as it was.
func FuzzL0MergeState(f *testing.F) {
	l0 := []*runFile{{id: 7}, {id: 5}, {id: 3}}
	f.Add((&l0Merge{runs: l0[1:], done: []byte("k")}).encode())
	f.Add((&l0Merge{runs: l0}).encode())
	f.Add([]byte{2, 0, 0, 0})
	for _, m := range []*l0Merge{{runs: l0[1:], done: []byte("k")}, {runs: l0[2:]}, {runs: l0, done: []byte{}}} {
		got, err := decodeL0Merge(m.encode(), l0)
		if err != nil || got == nil || len(got.runs) != len(m.runs) || !bytes.Equal(got.done, m.done) || (got.done == nil) != (m.done == nil) {
			f.Fatalf("%+v read back as %+v, %v", m, got, err)
		}
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeL0Merge(v, l0)
		if err == nil && m != nil {
			if len(m.runs) == 0 || m.runs[len(m.runs)-1].id != 3 {
				t.Fatalf("%x: runs %v are not the oldest of level 0", v, m.runs)
			}
		}
	})
}

// TestL0MergeStateOfOtherRuns: a state that names runs other than the
// oldest of level 0 (left by a version of Ferry that merged level 0 in one
// go) is ignored, not trusted.
func TestL0MergeStateOfOtherRuns(t *testing.T) {
	l0 := []*runFile{{id: 9}, {id: 8}}
	for _, v := range [][]byte{
		(&l0Merge{runs: []*runFile{{id: 4}}, done: []byte("k")}).encode(),
		(&l0Merge{runs: []*runFile{{id: 9}}, done: []byte("k")}).encode(), // not the oldest
		(&l0Merge{runs: []*runFile{{id: 1}, {id: 9}, {id: 8}}}).encode(),  // more than level 0 has
	} {
		if m, err := decodeL0Merge(v, l0); err != nil || m != nil {
			t.Errorf("%x: got %+v, %v; want it ignored", v, m, err)
		}
	}
	if _, err := decodeL0Merge([]byte{1, 0, 0, 0, 0, 0, 0, 0, 8, 7}, l0); err == nil {
		t.Error("a state with a bad flag byte: no error")
	}
}
