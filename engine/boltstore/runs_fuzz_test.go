package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/zeebo/xxh3"
)

// FuzzRunBlock feeds arbitrary bytes, as a corrupt file could hold them,
// to the parsers of run blocks (both layouts) and run descriptions: they
// must return an answer or an error, never panic, and a block the writer
// made must give back every entry.
func FuzzRunBlock(f *testing.F) {
	// Well-formed blocks of three entries, in each layout.
	keys := [][]byte{[]byte("a"), []byte("abcdefgh-1"), []byte("abcdefgh-2")}
	wide, compact := makeWideBlock(keys), makeCompactBlock(f, keys)
	f.Add(wide, []byte("abcdefgh-2"))
	f.Add(compact, []byte("abcdefgh-1"))
	f.Add([]byte{0, 0, 0, 9, 1, 2}, []byte("x"))
	f.Add([]byte{blockCompact, 0, 2, 0, 'x', 0, 0, 0, 'y', 0, 0, 0, 0, 16, 0, 19, 1, 'x', 0, 1, 'y', 5}, []byte("x"))
	f.Add(encodeRunMeta(&runFile{count: 3, min: []byte("a"), max: []byte("b"), bloom: newRecentFilter(1, 0).bloom}), []byte("a"))
	for i, k := range keys {
		if v := blockGet(wide, k, nil); !bytes.Equal(v, []byte("val")) {
			f.Fatalf("well-formed wide block: %q -> %q", k, v)
		}
		if v := blockGet(compact, k, nil); !bytes.Equal(v, testIndexVal(i)) {
			f.Fatalf("well-formed compact block: %q -> %x", k, v)
		}
	}
	f.Fuzz(func(t *testing.T, b, id []byte) {
		var dec []byte
		got := bytes.Clone(blockGet(b, id, &dec))
		// A value found is the value of an entry whose key is id.
		match := false
		n := blockCount(b)
		for i := 0; i < n; i++ {
			k, v := blockEntry(b, n, i, &dec)
			if k != nil && !bytes.Equal(blockKey(b, n, i), k) {
				t.Fatalf("entry %d: blockKey and blockEntry disagree", i)
			}
			if got != nil && bytes.Equal(k, id) && bytes.Equal(v, got) {
				match = true
			}
		}
		if got != nil && !match {
			t.Fatalf("%q found with %x, which no entry of that key holds", id, got)
		}
		if f, err := decodeRunMeta(1, b); err == nil {
			// Whatever size the words give, probing stays in range.
			h := xxh3.Hash128(id)
			f.bloom.MayHave(h.Lo, h.Hi)
		}
	})
}

// FuzzCompactBlockRoundTrip builds compact blocks as the writer does from
// arbitrary sorted keys (the fuzzer's bytes cut at each 0xFE) and checks
// that every key is found with its value, in order, and that an arbitrary
// id is found only if it is one of them.
func FuzzCompactBlockRoundTrip(f *testing.F) {
	f.Add([]byte("a\xfeabcdefgh-1\xfeabcdefgh-2"), []byte("abcdefgh-1"))
	f.Add([]byte("org-00001/x\xfeorg-00001/y\xfeorg-00002/a\xfe\x00\xfe\x00\x00"), []byte("org-00001/"))
	f.Add(bytes.Repeat([]byte("customer-000123\xfe"), 3), []byte("customer-00012"))
	f.Fuzz(func(t *testing.T, blob, id []byte) {
		set := map[string]bool{}
		for _, k := range bytes.Split(blob, []byte{0xFE}) {
			if len(k) > 0 {
				set[string(k)] = true
			}
		}
		if len(set) == 0 {
			return
		}
		sorted := slices.Sorted(maps.Keys(set))
		keys := make([][]byte, len(sorted))
		for i, k := range sorted {
			keys[i] = []byte(k)
		}
		blocks, firsts := compactBlocks(keys, testIndexVal)
		var dec []byte
		i := 0
		for _, blk := range blocks {
			n := blockCount(blk)
			for e := range n {
				if k, v := blockEntry(blk, n, e, &dec); i >= len(keys) || !bytes.Equal(k, keys[i]) || !bytes.Equal(v, testIndexVal(i)) {
					t.Fatalf("entry %d reads back as %q, %x", i, k, v)
				}
				if v := blockGet(blk, keys[i], &dec); !bytes.Equal(v, testIndexVal(i)) {
					t.Fatalf("%q not found (%x)", keys[i], v)
				}
				i++
			}
		}
		if i != len(keys) {
			t.Fatalf("%d entries read back of %d", i, len(keys))
		}
		j := sort.Search(len(firsts), func(j int) bool { return bytes.Compare(firsts[j], id) > 0 }) - 1
		if j < 0 {
			j = 0
		}
		if v := blockGet(blocks[j], id, &dec); (v != nil) != set[string(id)] {
			t.Fatalf("%q: found %v, stored %v", id, v != nil, set[string(id)])
		}
	})
}

// makeWideBlock lays out a block of the sorted keys in the wide layout
// (written by store formats up to 3), each with the value "val"; the keys
// must fit one block.
func makeWideBlock(keys [][]byte) []byte {
	blocks, _ := wideBlocks(keys, func(int) []byte { return []byte("val") })
	if len(blocks) != 1 {
		panic(fmt.Sprintf("%d keys make %d wide blocks", len(keys), len(blocks)))
	}
	return blocks[0]
}

// testIndexVal is the value makeCompactBlock gives key i: an index value
// whose version offset grows with i (1, 2 and 3-byte varints), with the
// engine.RawTextHash part on odd i.
func testIndexVal(i int) []byte {
	n := indexValSize
	if i%2 == 1 {
		n = indexValRaw
	}
	v := make([]byte, n)
	binary.BigEndian.PutUint64(v, uint64(i)*uint64(i)*97)
	for j := 8; j < n; j++ {
		v[j] = byte(i + j)
	}
	return v
}

// makeCompactBlock lays out a compact block of the sorted keys as
// runWriter does, key i with testIndexVal(i); the keys must fit one block.
func makeCompactBlock(tb testing.TB, keys [][]byte) []byte {
	blocks, _ := compactBlocks(keys, testIndexVal)
	if len(blocks) != 1 {
		tb.Fatalf("%d keys make %d compact blocks", len(keys), len(blocks))
	}
	return blocks[0]
}

// TestBlockGetDistributions: a lookup finds every key of a block and none
// between them, in both layouts, whether the keys spread evenly (hashes),
// count up (decimal ids), share their first 8 bytes, cluster, or are
// shorter than the 8-byte prefixes the wide layout compares first.
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
			wide := makeWideBlock(bs)
			// The compact layout in as many blocks as the writer makes
			// (100 entries of 40-50 bytes take two), each id looked up
			// in the block whose first key is the last <= it.
			blocks, firsts := compactBlocks(bs, testIndexVal)
			if n <= 64 && len(blocks) != 1 || n == 100 && (name == "hash" || name == "shared") && len(blocks) < 2 {
				t.Fatalf("%s n=%d: %d compact blocks", name, n, len(blocks))
			}
			var dec []byte
			get := func(id string) []byte {
				j := sort.Search(len(firsts), func(j int) bool { return string(firsts[j]) > id }) - 1
				if j < 0 {
					j = 0
				}
				return blockGet(blocks[j], []byte(id), &dec)
			}
			total := 0
			for _, blk := range blocks {
				total += blockCount(blk)
			}
			if total != len(keys) {
				t.Fatalf("%s n=%d: compact blocks count %d entries", name, n, total)
			}
			for i, k := range keys {
				if v := blockGet(wide, []byte(k), nil); string(v) != "val" {
					t.Fatalf("%s n=%d: %q not found in the wide block (%q)", name, n, k, v)
				}
				if v := get(k); !bytes.Equal(v, testIndexVal(i)) {
					t.Fatalf("%s n=%d: %q not found in the compact blocks (%x)", name, n, k, v)
				}
				for _, miss := range []string{k + "\x00", k[:len(k)-1], k + "~"} {
					if !set[miss] && (blockGet(wide, []byte(miss), nil) != nil || get(miss) != nil) {
						t.Fatalf("%s n=%d: %q found", name, n, miss)
					}
				}
			}
			i := 0
			for _, blk := range blocks {
				for e := range blockCount(blk) {
					if ek, ev := blockEntry(blk, blockCount(blk), e, nil); string(ek) != keys[i] || !bytes.Equal(ev, testIndexVal(i)) {
						t.Fatalf("%s n=%d: compact entry %d is %q, %x", name, n, i, ek, ev)
					}
					i++
				}
			}
			for _, out := range []string{"", "\xff\xff\xff\xff\xff\xff\xff\xff\xff"} {
				if blockGet(wide, []byte(out), nil) != nil || get(out) != nil {
					t.Fatalf("%s n=%d: an id outside the block found", name, n)
				}
			}
		}
	}
}

// TestCompactBlockSize: the compact layout takes ~56 bytes for an entry
// of a 21-byte _id and a 33-byte index value at a 1M dataset's offsets,
// against 68 in the wide layout; and the writer keeps blocks within
// runBlockSize.
func TestCompactBlockSize(t *testing.T) {
	var bb blockBuilder
	v := make([]byte, indexValRaw)
	n := 0
	var over []byte // the first key that no longer fit
	for i := 0; ; i++ {
		k := fmt.Appendf(nil, "%016x-%04d", uint64(i+1)*0x9E3779B97F4A7C15, i%10000)
		binary.BigEndian.PutUint64(v, uint64(1_500_000+i))
		if !bb.fits(k, v) {
			over = k
			break
		}
		if err := bb.add(k, v); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if bb.size() > runBlockSize {
		t.Fatalf("block of %d bytes", bb.size())
	}
	per := float64(bb.size()) / float64(n)
	if per < 54 || per > 58 {
		t.Fatalf("%.1f bytes an entry (%d entries), want ~56", per, n)
	}
	if err := bb.add(over, v); err == nil {
		t.Fatal("an entry past a full block: no error")
	}
	if err := (&blockBuilder{}).add([]byte("x"), v[:7]); err == nil {
		t.Fatal("a 7-byte value: no error")
	}
	// A first entry longer than a block makes a block of its own.
	var big blockBuilder
	long := bytes.Repeat([]byte("k"), 3*runBlockSize)
	if err := big.add(long, v); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, big.size())
	big.encode(b)
	if k, got := blockEntry(b, blockCount(b), 0, nil); !bytes.Equal(k, long) || !bytes.Equal(got, v) {
		t.Fatalf("long entry read back as %d bytes, %x", len(k), got)
	}
}

// TestBlockEntryHugeKeyLength: a key length near 2^64 in a corrupt block
// must not wrap around the bounds check, in either layout.
func TestBlockEntryHugeKeyLength(t *testing.T) {
	b := binary.BigEndian.AppendUint32(nil, 1)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = binary.BigEndian.AppendUint32(b, 16)
	b = binary.AppendUvarint(b, ^uint64(0))
	b = append(b, 1, 'x')
	c := []byte{blockCompact, 0, 1, 0, 'x', 0, 0, 0, 0, 10}
	c = binary.AppendUvarint(c, ^uint64(0))
	c = append(c, 1, 'x')
	for _, blk := range [][]byte{b, c} {
		if k, v := blockEntry(blk, 1, 0, nil); k != nil || v != nil {
			t.Fatalf("corrupt entry parsed as %q, %q", k, v)
		}
		if v := blockGet(blk, []byte("x"), nil); v != nil {
			t.Fatalf("lookup in a corrupt block found %q", v)
		}
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
