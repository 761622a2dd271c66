package natsstore

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	"github.com/ferrydata/ferry/engine"
)

// Version layout in a dataset stream message:
//
//	format(1) flags(1) ts(8) offset(8) previous offset(8) previous seq(8)
//	hash(16) raw text hash(8) idlen(uvarint) id body
//
// The previous version's stream sequence lets readers step back past a
// version that was never committed without mapping offsets.
const (
	versionFormat = 1
	flagDeleted   = 1
	flagHasPrev   = 2
	versionHeader = 2 + 8*4 + 16 + 8
)

// version is the decoded fixed part of a stored version.
type version struct {
	flags   byte
	ts      int64
	offset  uint64
	prevOff uint64
	prevSeq uint64
	hash    engine.Hash
	rawHash uint64
	id      string
	body    []byte // aliases the message unless copied
}

func (v *version) deleted() bool { return v.flags&flagDeleted != 0 }
func (v *version) hasPrev() bool { return v.flags&flagHasPrev != 0 }

func appendVersion(dst []byte, v *version) []byte {
	dst = append(dst, versionFormat, v.flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(v.ts))
	dst = binary.BigEndian.AppendUint64(dst, v.offset)
	dst = binary.BigEndian.AppendUint64(dst, v.prevOff)
	dst = binary.BigEndian.AppendUint64(dst, v.prevSeq)
	dst = append(dst, v.hash[:]...)
	dst = binary.BigEndian.AppendUint64(dst, v.rawHash)
	dst = binary.AppendUvarint(dst, uint64(len(v.id)))
	dst = append(dst, v.id...)
	return append(dst, v.body...)
}

func decodeVersion(b []byte) (version, error) {
	var v version
	if len(b) < versionHeader || b[0] != versionFormat {
		return v, fmt.Errorf("not a Ferry version (%d bytes)", len(b))
	}
	v.flags = b[1]
	v.ts = int64(binary.BigEndian.Uint64(b[2:]))
	v.offset = binary.BigEndian.Uint64(b[10:])
	v.prevOff = binary.BigEndian.Uint64(b[18:])
	v.prevSeq = binary.BigEndian.Uint64(b[26:])
	copy(v.hash[:], b[34:50])
	v.rawHash = binary.BigEndian.Uint64(b[50:])
	n, k := binary.Uvarint(b[versionHeader:])
	if k <= 0 || uint64(len(b)-versionHeader-k) < n {
		return v, fmt.Errorf("corrupt version")
	}
	start := versionHeader + k
	v.id = string(b[start : start+int(n)])
	v.body = b[start+int(n):]
	return v, nil
}

func (v *version) record() engine.Record {
	return engine.Record{Offset: v.offset, TS: v.ts, Previous: v.prevOff, HasPrev: v.hasPrev(),
		Hash: v.hash, ID: v.id, Deleted: v.deleted(), Body: append([]byte(nil), v.body...)}
}

// dsMeta is a dataset's committed state, kept in the meta stream.
type dsMeta struct {
	Populated  bool   `json:"populated"`
	Versions   uint64 `json:"versions"`
	Entities   uint64 `json:"entities"`
	Deleted    uint64 `json:"deleted"`
	LastOffset uint64 `json:"last_offset"`
	// LastSeq is the last stream sequence that belongs to a committed
	// transaction: readers never look past it.
	LastSeq uint64 `json:"last_seq"`
	// LastID is the _id of the version at LastSeq, which lookups ask for
	// too, to tell an answer from a lagging replica.
	LastID string `json:"last_id,omitempty"`
	// Holes are stream sequence ranges written by transactions that never
	// committed (a crashed or fenced worker); their messages are deleted
	// and offsets skip them.
	Holes   []hole    `json:"holes,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Stream is the dataset's stream name, for operators.
	Stream string `json:"stream"`
}

// hole is an inclusive range of stream sequences.
type hole struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

func (m *dsMeta) info(name string) engine.DatasetInfo {
	return engine.DatasetInfo{Name: name, Populated: m.Populated, Versions: m.Versions, Entities: m.Entities,
		Deleted: m.Deleted, LastOffset: m.LastOffset, Created: m.Created, Updated: m.Updated}
}

// inHole reports whether seq lies in a hole.
func (m *dsMeta) inHole(seq uint64) bool {
	i := sort.Search(len(m.Holes), func(i int) bool { return m.Holes[i].To >= seq })
	return i < len(m.Holes) && m.Holes[i].From <= seq
}

// seqOf returns the stream sequence of offset off (which need not exist
// yet): offsets count the committed sequences, holes excluded.
func (m *dsMeta) seqOf(off uint64) uint64 {
	seq := off + 1
	for _, h := range m.Holes {
		if h.From <= seq {
			seq += h.To - h.From + 1
		} else {
			break
		}
	}
	return seq
}

// nextOffset is the offset the next version gets.
func (m *dsMeta) nextOffset() uint64 {
	if m.Versions == 0 {
		return 0
	}
	return m.LastOffset + 1
}
