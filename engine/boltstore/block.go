package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Run blocks: the entries of an index run, about runBlockSize bytes each
// (runs.go). Two layouts exist; the first byte tells them apart.
//
// A wide block (store formats 3 and earlier; read, no longer written) is:
// count n (uint32, so its first byte is 0); the first 8 bytes of each
// entry's key (zero-padded, big-endian uint64 each), which a lookup
// searches without touching the entries; the offset of each entry from
// the block's start (uint32 each); then the entries, each uvarint key
// length, key, value length (one byte), value.
//
// A compact block (store format 4) is: blockCompact; count n (uint16);
// the length c of the prefix all its keys share (one byte, at most 255);
// the 4 bytes of each entry's key after that prefix (zero-padded, a
// big-endian uint32 each), which a lookup searches first as it searches a
// wide block's 8-byte prefixes; the offset of each entry from the block's
// start (uint16 each); then the entries, each uvarint key length, key,
// then the value with its first 8 bytes (an index value's version offset,
// big-endian) as a uvarint. An entry ends where the next begins (the last
// at the block's end), so its value's length is not stored.
//
// With 21-byte _ids and 33-byte index values an entry takes ~56 bytes
// where a wide block's took 68: the index's pages are ~18% fewer, which
// is what lets a 1M dataset's whole index stay resident under the default
// bound while a run writes 10% of it (docs/performance.md). Skipping the
// shared prefix keeps the 4 bytes telling: a block holds ~65 of a
// million sorted _ids, which share their first 3-4 characters, so 8 bytes
// from the key's start would carry no more than 4 from past the prefix.
// (Searching the entries' keys through the offsets alone, at 52 bytes an
// entry, cost ~0.5 µs more a lookup: one cache miss per probe.)
//
// Where the 4 bytes after the shared prefix tell few keys apart (a block
// spanning two clusters of ids such as "org-00001/..." and
// "org-00002/..."), a lookup walks the tie comparing whole keys: as
// correct, slower.
//
// Offsets fit 16 bits: the writer ends a block before an entry would
// take it past runBlockSize, so every entry but a block's first starts
// below runBlockSize (a first entry may be longer, and the block with it).

// blockCompact is the first byte of a compact block.
const blockCompact = 0xB2

// Offsets are 16-bit: this fails to compile if runBlockSize outgrows
// them.
const _ = uint16(runBlockSize)

// compactHead is the size of a compact block's header for n entries.
func compactHead(n int) int { return 4 + 6*n }

// compactTable is where a compact block's table of 4-byte prefixes
// starts; its offsets follow the table.
const compactTable = 4

// compactOffsets is where the offsets of a compact block of n entries
// start.
func compactOffsets(n int) int { return compactTable + 4*n }

// shortPrefix is the 4 bytes of k after its first c (zero-padded) as a
// big-endian number.
func shortPrefix(k []byte, c int) uint32 {
	if len(k) >= c+4 {
		return binary.BigEndian.Uint32(k[c:])
	}
	var b [4]byte
	if len(k) > c {
		copy(b[:], k[c:])
	}
	return binary.BigEndian.Uint32(b[:])
}

// isCompact reports whether b is a compact block.
func isCompact(b []byte) bool { return len(b) > 0 && b[0] == blockCompact }

// blockCount returns the number of entries of block b, 0 if its header
// does not parse.
func blockCount(b []byte) int {
	if isCompact(b) {
		if len(b) < compactTable {
			return 0
		}
		n := int(binary.BigEndian.Uint16(b[1:]))
		if compactHead(n) >= len(b) {
			return 0
		}
		return n
	}
	if len(b) < 4 {
		return 0
	}
	n := int(binary.BigEndian.Uint32(b))
	if 4+12*n > len(b) {
		return 0
	}
	return n
}

// keyPrefix is the first 8 bytes of k as a big-endian number (zero-padded):
// prefixes order as the keys do, ties aside.
func keyPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

// compactEntry returns the bytes of entry i of compact block b (n
// entries), nil if its offsets do not parse.
func compactEntry(b []byte, n, i int) []byte {
	o := compactOffsets(n)
	off := int(binary.BigEndian.Uint16(b[o+2*i:]))
	end := len(b)
	if i+1 < n {
		end = int(binary.BigEndian.Uint16(b[o+2*(i+1):]))
	}
	if off < compactHead(n) || off >= end || end > len(b) {
		return nil
	}
	return b[off:end]
}

// splitKey splits a compact entry into its key and the encoded value
// after it (nil, nil if it does not parse).
func splitKey(e []byte) (k, rest []byte) {
	kl, w := binary.Uvarint(e)
	if w <= 0 || kl >= uint64(len(e)-w) { // the key and at least the value's first byte
		return nil, nil
	}
	return e[w : w+int(kl)], e[w+int(kl):]
}

// blockKey returns the key of entry i of b (n entries), nil if it does
// not parse.
func blockKey(b []byte, n, i int) []byte {
	if !isCompact(b) {
		k, _ := blockEntry(b, n, i, nil)
		return k
	}
	e := compactEntry(b, n, i)
	if e == nil {
		return nil
	}
	k, _ := splitKey(e)
	return k
}

// blockEntry returns entry i of b, which has n entries (nil, nil if it
// does not parse). The key is in b. So is the value of a wide block; a
// compact block's value is decoded into *dec, which the next call with
// dec reuses (a nil dec: into new memory).
func blockEntry(b []byte, n, i int, dec *[]byte) (k, v []byte) {
	if isCompact(b) {
		e := compactEntry(b, n, i)
		if e == nil {
			return nil, nil
		}
		k, rest := splitKey(e)
		if k == nil {
			return nil, nil
		}
		if v = decodeCompactVal(rest, dec); v == nil {
			return nil, nil
		}
		return k, v
	}
	off := int(binary.BigEndian.Uint32(b[4+8*n+4*i:]))
	if off >= len(b) {
		return nil, nil
	}
	e := b[off:]
	kl, w := binary.Uvarint(e)
	if w <= 0 || kl >= uint64(len(e)-w) { // the key and at least the value's length byte
		return nil, nil
	}
	k = e[w : w+int(kl)]
	e = e[w+int(kl):]
	vl := int(e[0])
	if len(e)-1 < vl {
		return nil, nil
	}
	return k, e[1 : 1+vl]
}

// decodeCompactVal decodes a compact entry's value (nil if it does not
// parse) into *dec, or new memory when dec is nil.
func decodeCompactVal(enc []byte, dec *[]byte) []byte {
	off, w := binary.Uvarint(enc)
	if w <= 0 {
		return nil
	}
	var buf []byte
	if dec != nil {
		buf = (*dec)[:0]
	}
	buf = binary.BigEndian.AppendUint64(buf, off)
	buf = append(buf, enc[w:]...)
	if dec != nil {
		*dec = buf
	}
	return buf
}

// compactSearch returns the first entry of compact block b (n entries)
// whose table prefix is >= p, n if none is.
func compactSearch(b []byte, n int, p uint32) int {
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if binary.BigEndian.Uint32(b[compactTable+4*m:]) < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// blockGet returns id's value in block b, nil if b does not hold it. A
// compact block's value is decoded as blockEntry does.
func blockGet(b, id []byte, dec *[]byte) []byte {
	n := blockCount(b)
	if isCompact(b) {
		if n == 0 {
			return nil
		}
		// The table orders as the keys do, ties aside, for keys that
		// share the block's prefix; an id that does not is not in the
		// block, and the comparison of whole keys below says so.
		p := shortPrefix(id, int(b[3]))
		for i := compactSearch(b, n, p); i < n && binary.BigEndian.Uint32(b[compactTable+4*i:]) == p; i++ {
			e := compactEntry(b, n, i)
			if e == nil {
				return nil
			}
			k, rest := splitKey(e)
			switch cmp := bytes.Compare(k, id); {
			case k == nil || cmp > 0:
				return nil
			case cmp == 0:
				return decodeCompactVal(rest, dec)
			}
		}
		return nil
	}
	p := keyPrefix(id)
	lo, hi := 0, n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if binary.BigEndian.Uint64(b[4+8*m:]) < p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo; i < n && binary.BigEndian.Uint64(b[4+8*i:]) == p; i++ {
		k, v := blockEntry(b, n, i, nil)
		switch c := bytes.Compare(k, id); {
		case c == 0:
			return v
		case c > 0:
			return nil
		}
	}
	return nil
}

// blockBuilder lays out compact blocks.
type blockBuilder struct {
	ents []byte   // the entries so far
	offs []uint16 // where each starts in ents
}

// minCompactVal is the shortest value a compact entry holds: its first 8
// bytes are encoded as a number.
const minCompactVal = 8

// entrySize is the size of a compact entry of key k and value v (at
// least minCompactVal bytes).
func entrySize(k, v []byte) int {
	return uvarintLen(uint64(len(k))) + len(k) + uvarintLen(binary.BigEndian.Uint64(v)) + len(v) - minCompactVal
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// fits reports whether an entry of key k and value v still fits the block
// (an empty block takes any entry).
func (bb *blockBuilder) fits(k, v []byte) bool {
	return len(bb.offs) == 0 || len(v) >= minCompactVal && compactHead(len(bb.offs)+1)+len(bb.ents)+entrySize(k, v) <= runBlockSize
}

// add appends an entry; v is copied. The block must be empty or have
// room for it (fits), which keeps every offset within 16 bits.
func (bb *blockBuilder) add(k, v []byte) error {
	if len(v) < minCompactVal || len(v) > 255 {
		return fmt.Errorf("index value of %d bytes", len(v))
	}
	if !bb.fits(k, v) {
		return fmt.Errorf("index run block full")
	}
	bb.offs = append(bb.offs, uint16(len(bb.ents)))
	bb.ents = binary.AppendUvarint(bb.ents, uint64(len(k)))
	bb.ents = append(bb.ents, k...)
	bb.ents = binary.AppendUvarint(bb.ents, binary.BigEndian.Uint64(v))
	bb.ents = append(bb.ents, v[minCompactVal:]...)
	return nil
}

// size is the size of the block as built so far.
func (bb *blockBuilder) size() int { return compactHead(len(bb.offs)) + len(bb.ents) }

// encode writes the block into b, which has size() bytes, and empties the
// builder.
func (bb *blockBuilder) encode(b []byte) {
	n := len(bb.offs)
	head := compactHead(n)
	first, _ := splitKey(bb.ents[bb.offs[0]:])
	last, _ := splitKey(bb.ents[bb.offs[n-1]:])
	c := 0
	for c < 255 && c < len(first) && c < len(last) && first[c] == last[c] {
		c++
	}
	b[0] = blockCompact
	binary.BigEndian.PutUint16(b[1:], uint16(n))
	b[3] = byte(c)
	o := compactOffsets(n)
	for i, off := range bb.offs {
		k, _ := splitKey(bb.ents[off:])
		binary.BigEndian.PutUint32(b[compactTable+4*i:], shortPrefix(k, c))
		binary.BigEndian.PutUint16(b[o+2*i:], off+uint16(head))
	}
	copy(b[head:], bb.ents)
	bb.ents, bb.offs = bb.ents[:0], bb.offs[:0]
}
