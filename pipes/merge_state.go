package pipes

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/bloom"
	"github.com/zeebo/xxh3"
)

// The merge source keeps its indexes in the store's key-value namespace
// "merge:<pipe>". Keys are short and use only [a-z0-9/] so that any store
// can hold them; everything is addressed by 128-bit xxh3 hashes:
//
//	m/<hash(dataset, _id)>  member: dataset, _id, deleted, its keys, its cluster
//	k/<hash(space, value)>  equality key -> the members that have it
//	c/<hash(output _id)>    cluster: output _id, deleted, its members
//	count                   number of members (decimal)
//	progress                "<reader nonce>/<chunk>" of the last committed chunk
//
// A member's keys are the hashes of its equality values in each key
// space; two members merge when they share one. A collision of two
// 128-bit hashes (about 2^-64 for a billion keys) would merge two
// unrelated entities; Ferry accepts that risk as it does for _id hashes
// in full runs.

// h128 is a 128-bit xxh3 hash.
type h128 [16]byte

func hashString(s string) h128 {
	v := xxh3.HashString128(s)
	var h h128
	binary.BigEndian.PutUint64(h[:8], v.Hi)
	binary.BigEndian.PutUint64(h[8:], v.Lo)
	return h
}

func memberHash(ds, id string) h128 { return hashString(ds + "\x00" + id) }

func (h h128) isZero() bool { return h == h128{} }

func cmpH128(a, b h128) int { return bytes.Compare(a[:], b[:]) }

// h128Set is a set of hashes with a sorted listing.
type h128Set map[h128]struct{}

func (s h128Set) add(h h128)      { s[h] = struct{}{} }
func (s h128Set) has(h h128) bool { _, ok := s[h]; return ok }
func (s h128Set) sorted() []h128 {
	out := make([]h128, 0, len(s))
	for h := range s {
		out = append(out, h)
	}
	slices.SortFunc(out, cmpH128)
	return out
}

func memberKey(h h128) string  { return "m/" + hex.EncodeToString(h[:]) }
func clusterKey(h h128) string { return "c/" + hex.EncodeToString(h[:]) }
func eqKey(h h128) string      { return "k/" + hex.EncodeToString(h[:]) }

// errCorrupt reports undecodable merge state.
var errCorrupt = errors.New("corrupt merge index (run the pipe with --reset to rebuild it)")

// mergeMember is a member record.
type mergeMember struct {
	ds, id  string
	deleted bool
	cluster h128   // zero: in no cluster
	keys    []h128 // sorted, distinct
	raw     []byte // encoding as loaded; nil for a new member
	removed bool
}

func (m *mergeMember) encode() []byte {
	b := make([]byte, 0, 2+16+len(m.ds)+len(m.id)+8+16*len(m.keys))
	b = append(b, 1, boolByte(m.deleted))
	b = append(b, m.cluster[:]...)
	b = binary.AppendUvarint(b, uint64(len(m.ds)))
	b = append(b, m.ds...)
	b = binary.AppendUvarint(b, uint64(len(m.id)))
	b = append(b, m.id...)
	b = binary.AppendUvarint(b, uint64(len(m.keys)))
	for _, k := range m.keys {
		b = append(b, k[:]...)
	}
	return b
}

func decodeMember(b []byte) (*mergeMember, error) {
	d := decoderOf(b)
	if d.byte() != 1 {
		return nil, errCorrupt
	}
	m := &mergeMember{raw: b}
	m.deleted = d.byte() == 1
	m.cluster = d.hash()
	m.ds = d.str()
	m.id = d.str()
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, errCorrupt
	}
	m.keys = make([]h128, n)
	for i := range m.keys {
		m.keys[i] = d.hash()
	}
	if d.err || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return m, nil
}

// mergeCluster is a cluster record.
type mergeCluster struct {
	id      string
	deleted bool
	members []h128 // sorted
	raw     []byte
	removed bool
}

func (c *mergeCluster) encode() []byte {
	b := make([]byte, 0, 2+len(c.id)+8+16*len(c.members))
	b = append(b, 1, boolByte(c.deleted))
	b = binary.AppendUvarint(b, uint64(len(c.id)))
	b = append(b, c.id...)
	b = binary.AppendUvarint(b, uint64(len(c.members)))
	for _, k := range c.members {
		b = append(b, k[:]...)
	}
	return b
}

func decodeCluster(b []byte) (*mergeCluster, error) {
	d := decoderOf(b)
	if d.byte() != 1 {
		return nil, errCorrupt
	}
	c := &mergeCluster{raw: b}
	c.deleted = d.byte() == 1
	c.id = d.str()
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, errCorrupt
	}
	c.members = make([]h128, n)
	for i := range c.members {
		c.members[i] = d.hash()
	}
	if d.err || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return c, nil
}

// mergeIndexEntry lists the members that have one equality key.
type mergeIndexEntry struct {
	members []h128 // sorted
	raw     []byte
}

func (e *mergeIndexEntry) encode() []byte {
	b := make([]byte, 0, 16*len(e.members))
	for _, m := range e.members {
		b = append(b, m[:]...)
	}
	return b
}

func decodeIndexEntry(b []byte) (*mergeIndexEntry, error) {
	if len(b)%16 != 0 {
		return nil, errCorrupt
	}
	e := &mergeIndexEntry{raw: b, members: make([]h128, len(b)/16)}
	for i := range e.members {
		copy(e.members[i][:], b[16*i:])
	}
	return e, nil
}

func (e *mergeIndexEntry) add(m h128) {
	i, found := slices.BinarySearchFunc(e.members, m, cmpH128)
	if !found {
		e.members = slices.Insert(e.members, i, m)
	}
}

func (e *mergeIndexEntry) remove(m h128) {
	i, found := slices.BinarySearchFunc(e.members, m, cmpH128)
	if found {
		e.members = slices.Delete(e.members, i, i+1)
	}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// binDecoder reads the records above; err is set on a short buffer.
type binDecoder struct {
	b   []byte
	err bool
}

func decoderOf(b []byte) *binDecoder { return &binDecoder{b: b} }

func (d *binDecoder) byte() byte {
	if len(d.b) < 1 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *binDecoder) hash() h128 {
	var h h128
	if len(d.b) < 16 {
		d.err = true
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[16:]
	return h
}

func (d *binDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *binDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// kvView reads the merge namespace as the reader must see it: the store's
// committed state overlaid with the changes of the chunks this reader
// produced that may not be committed yet (layers, oldest first). The
// engine commits a run's batches in order on another goroutine, so a key
// that no layer holds has the value it had when the run started, or a
// value a committed layer wrote; a layer is dropped once the store's
// "progress" key shows it committed.
//
// On a run that starts from an empty namespace (a pipe's first run) every
// key the store holds was written by this run, so written, a Bloom filter
// of the keys of every layer, answers most reads of absent keys (new
// members, values and clusters) without asking the store.
type kvView struct {
	store   engine.Store
	ns      string
	layers  []kvLayer
	written *bloom.Filter // nil unless the run started empty
}

// addWritten records a layer's keys in written.
func (v *kvView) addWritten(keys []string) {
	if v.written == nil {
		return
	}
	for _, k := range keys {
		h := xxh3.HashString128(k)
		v.written.Add(h.Lo, h.Hi)
	}
}

type kvLayer struct {
	seq int
	m   map[string][]byte // nil value: deleted
}

func (v *kvView) get(ctx context.Context, key string) ([]byte, bool, error) {
	for i := len(v.layers) - 1; i >= 0; i-- {
		if val, ok := v.layers[i].m[key]; ok {
			return val, val != nil, nil
		}
	}
	if v.written != nil {
		if h := xxh3.HashString128(key); !v.written.MayHave(h.Lo, h.Hi) {
			return nil, false, nil
		}
	}
	return v.store.GetKV(ctx, v.ns, key)
}

// mergeState is one chunk's working copy of the records it touches,
// decoded on first use; delta encodes what changed.
type mergeState struct {
	ctx context.Context
	kv  *kvView
	// repair: a record that does not decode reads as absent and is
	// rewritten or deleted (full runs); otherwise it fails the run.
	repair   bool
	corrupt  map[string]bool
	members  map[h128]*mergeMember // nil: absent
	clusters map[h128]*mergeCluster
	index    map[h128]*mergeIndexEntry
}

func newMergeState(ctx context.Context, kv *kvView, repair bool) *mergeState {
	return &mergeState{ctx: ctx, kv: kv, repair: repair, corrupt: map[string]bool{}, members: map[h128]*mergeMember{}, clusters: map[h128]*mergeCluster{}, index: map[h128]*mergeIndexEntry{}}
}

// memberRec returns the member record of h, removed or not; nil if there
// is none.
func (s *mergeState) memberRec(h h128) (*mergeMember, error) {
	if m, ok := s.members[h]; ok {
		return m, nil
	}
	b, ok, err := s.kv.get(s.ctx, memberKey(h))
	if err != nil {
		return nil, err
	}
	var m *mergeMember
	if ok {
		if m, err = decodeMember(b); err != nil {
			if err = s.bad(memberKey(h), err); err != nil {
				return nil, err
			}
		}
	}
	s.members[h] = m
	return m, nil
}

// member is memberRec without removed members.
func (s *mergeState) member(h h128) (*mergeMember, error) {
	m, err := s.memberRec(h)
	if m != nil && m.removed {
		return nil, err
	}
	return m, err
}

func (s *mergeState) newMember(h h128, ds, id string) *mergeMember {
	m := &mergeMember{ds: ds, id: id}
	s.members[h] = m
	return m
}

// cluster returns the cluster record of h (nil if none or removed).
func (s *mergeState) cluster(h h128) (*mergeCluster, error) {
	c, ok := s.clusters[h]
	if !ok {
		b, found, err := s.kv.get(s.ctx, clusterKey(h))
		if err != nil {
			return nil, err
		}
		if found {
			if c, err = decodeCluster(b); err != nil {
				if err = s.bad(clusterKey(h), err); err != nil {
					return nil, err
				}
			}
		}
		s.clusters[h] = c
	}
	if c != nil && c.removed {
		return nil, nil
	}
	return c, nil
}

// clusterOrNew returns the cluster record of h, creating (or reviving) it.
func (s *mergeState) clusterOrNew(h h128) (*mergeCluster, error) {
	if _, err := s.cluster(h); err != nil {
		return nil, err
	}
	c := s.clusters[h]
	if c == nil {
		c = &mergeCluster{}
		s.clusters[h] = c
	}
	c.removed = false
	return c, nil
}

// indexEntry returns the members of an equality key (an empty entry if
// none).
func (s *mergeState) indexEntry(h h128) (*mergeIndexEntry, error) {
	if e, ok := s.index[h]; ok {
		return e, nil
	}
	b, ok, err := s.kv.get(s.ctx, eqKey(h))
	if err != nil {
		return nil, err
	}
	e := &mergeIndexEntry{}
	if ok {
		if e, err = decodeIndexEntry(b); err != nil {
			if err = s.bad(eqKey(h), err); err != nil {
				return nil, err
			}
			e = &mergeIndexEntry{}
		}
	}
	s.index[h] = e
	return e, nil
}

// bad handles a record that does not decode: an error, or (repair) a
// record to drop.
func (s *mergeState) bad(key string, err error) error {
	if !s.repair {
		return fmt.Errorf("%s: %w", key, err)
	}
	s.corrupt[key] = true
	return nil
}

// delta encodes every record that differs from what was loaded: the
// key-value writes (nil: delete) that make the store match this state.
func (s *mergeState) delta() map[string][]byte {
	out := map[string][]byte{}
	for h, m := range s.members {
		switch {
		case m == nil:
		case m.removed:
			if m.raw != nil {
				out[memberKey(h)] = nil
			}
		default:
			if b := m.encode(); !bytes.Equal(b, m.raw) {
				out[memberKey(h)] = b
			}
		}
	}
	for h, c := range s.clusters {
		switch {
		case c == nil:
		case c.removed:
			if c.raw != nil {
				out[clusterKey(h)] = nil
			}
		default:
			if b := c.encode(); !bytes.Equal(b, c.raw) {
				out[clusterKey(h)] = b
			}
		}
	}
	for k := range s.corrupt {
		if _, ok := out[k]; !ok {
			out[k] = nil
		}
	}
	for h, e := range s.index {
		b := e.encode()
		switch {
		case len(e.members) == 0:
			if e.raw != nil {
				out[eqKey(h)] = nil
			}
		case !bytes.Equal(b, e.raw):
			out[eqKey(h)] = b
		}
	}
	return out
}
