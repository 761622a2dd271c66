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
	f.Add(encodeRunMeta(&runFile{count: 3, min: []byte("a"), max: []byte("b"), bloom: newRecentFilter(1).bloom}), []byte("a"))
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
