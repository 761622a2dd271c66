package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
)

// FuzzRunBlock feeds arbitrary bytes, as a corrupt file could hold them,
// to the parsers of run blocks and run descriptions: they must return an
// answer or an error, never panic, and a block the writer made must give
// back every entry.
func FuzzRunBlock(f *testing.F) {
	// A well-formed block of three entries.
	keys := [][]byte{[]byte("a"), []byte("abcdefgh-1"), []byte("abcdefgh-2")}
	blk := makeBlock(keys)
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

// makeBlock lays out a run block of the sorted keys, each with the value
// "val", as runWriter does.
func makeBlock(keys [][]byte) []byte {
	var ents, blk []byte
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
	return append(blk, ents...)
}

// TestBlockGetDistributions: a lookup finds every key of a block and none
// between them, whether the keys spread evenly (hashes), count up
// (decimal ids), share their first 8 bytes, cluster, or are shorter than
// the 8-byte prefixes the search compares first.
func TestBlockGetDistributions(t *testing.T) {
	gens := map[string]func(i int) string{
		"hash":      func(i int) string { return fmt.Sprintf("%016x", uint64(i+1)*0x9E3779B97F4A7C15) },
		"decimal":   func(i int) string { return strconv.Itoa(1000 + i*7) },
		"shared":    func(i int) string { return fmt.Sprintf("customer-%06d", i*3) },
		"clustered": func(i int) string { return fmt.Sprintf("%c%05d", 'a'+byte(i/60)*20, i*i) },
		"short":     func(i int) string { return string([]byte{byte(i * 4), byte(i)}) },
	}
	for name, gen := range gens {
		for _, n := range []int{1, 2, 16, 17, 40, 64, 100} {
			set := map[string]bool{}
			for i := range n {
				set[gen(i)] = true
			}
			keys := slices.Sorted(maps.Keys(set))
			bs := make([][]byte, len(keys))
			for i, k := range keys {
				bs[i] = []byte(k)
			}
			blk := makeBlock(bs)
			for _, k := range keys {
				if v := blockGet(blk, []byte(k)); string(v) != "val" {
					t.Fatalf("%s n=%d: %q not found (%q)", name, n, k, v)
				}
				for _, miss := range []string{k + "\x00", k[:len(k)-1], k + "~"} {
					if !set[miss] && blockGet(blk, []byte(miss)) != nil {
						t.Fatalf("%s n=%d: %q found", name, n, miss)
					}
				}
			}
			if blockGet(blk, []byte("")) != nil || blockGet(blk, []byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff")) != nil {
				t.Fatalf("%s n=%d: an id outside the block found", name, n)
			}
		}
	}
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
