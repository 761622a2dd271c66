package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
)

// Read views for unchanged text (engine.RawViewer, engine.ViewConfirmer).
//
// A run that reads text it mostly wrote before spends its time looking
// _ids up. Done in the write transaction, those lookups run one after the
// other on the committer; ViewRaw does them in read transactions on the
// producer's workers instead, and the committer only confirms that
// nothing was written to the _id since the state the view saw. That state
// is named by the dataset's creation time (its incarnation) and the next
// offset: versions are only ever appended, so every change of an _id's
// latest version is a log entry at or after that offset.

// viewMark is the mark of the state m describes (zero for a dataset that
// has never been written by a store that records its creation).
func (m *meta) viewMark() engine.ViewMark {
	if m.Created.IsZero() {
		return engine.ViewMark{}
	}
	var next uint64
	if m.Versions > 0 {
		next = m.LastOffset + 1
	}
	return engine.ViewMark{Gen: m.Created.UnixNano(), Next: next}
}

// ViewRaw implements engine.RawViewer.
func (s *Store) ViewRaw(ctx context.Context, dataset string, batch []engine.Prepared) (bool, error) {
	looked := false
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		looked, err = s.viewRawIn(tx, dataset, batch)
		return err
	})
	return looked, err
}

// viewRawIn is ViewRaw in the read transaction tx.
func (s *Store) viewRawIn(tx *bolt.Tx, dataset string, batch []engine.Prepared) (bool, error) {
	b, m, err := datasetMeta(tx, dataset)
	if b == nil {
		return false, err
	}
	mark := m.viewMark()
	if mark == (engine.ViewMark{}) {
		return false, nil
	}
	x, err := s.datasetIndex(b, dataset)
	if err != nil {
		return false, fmt.Errorf("dataset %q: %w", dataset, err)
	}
	// Lazy text: most of it unchanged. Each value found is checked, and
	// copied if needed, before the next lookup.
	x.sc = &lookupScratch{hits: true, transient: true, s: s, reads: x.sc.reads}
	if x.rf = s.viewFilter(dataset, tx); x.recent != nil && x.rf == nil {
		// An empty "recent" costs a seek per _id for nothing.
		if k, _ := x.recent.Cursor().First(); k == nil {
			x.recent = nil
		}
	}
	n := 0
	var seen []byte // copies of the entries found for changed text
	var group []int // the batch's items of the lookups warmed together
	var ids [][]byte
	for g := 0; g < len(batch); {
		group, ids = group[:0], ids[:0]
		for ; g < len(batch) && len(group) < warmGroup; g++ {
			if p := &batch[g]; p.Lazy && p.RawHash != 0 {
				group = append(group, g)
				ids = append(ids, unsafe.Slice(unsafe.StringData(p.ID), len(p.ID))) // read only
			}
		}
		x.warm(ids)
		for k, i := range group {
			p := &batch[i]
			x.sc.warmed = &x.sc.warmHints[k]
			iv := x.getHashed(ids[k], x.sc.warmed.h)
			if n++; n%boundEvery == 0 {
				s.boundMapped(tx) // iv stays valid (a release drops pages, which fault back in)
			}
			if len(iv) == indexValRaw && iv[24]&flagDeleted == 0 && binary.BigEndian.Uint64(iv[25:]) == p.RawHash {
				p.SameIn = mark
				continue
			}
			// Changed (or new): the committer may write it against
			// what this view found (Put, writeTx.seen). The entry is
			// copied: the view's pages are gone once it ends.
			if iv != nil {
				if len(seen)+len(iv) > cap(seen) {
					seen = make([]byte, 0, max(64*indexValRaw, len(iv)))
				}
				seen = append(seen, iv...)
				iv = seen[len(seen)-len(iv) : len(seen) : len(seen)]
			}
			p.Seen, p.SeenIn = iv, mark
		}
		x.sc.warmed = nil
	}
	return true, nil
}

// warmGroup is how many lookups a view warms together (idIndex.warm).
const warmGroup = 16

// maxSinceScan bounds how many log entries UnchangedSince reads to learn
// what was written after a view; a view further behind is not confirmed.
const maxSinceScan = 1 << 16

// writtenSince holds the _ids of a dataset's log entries in [from, to) as
// a write transaction sees them, with the offset each was last written at.
type writtenSince struct {
	from, to uint64
	last     map[string]uint64
}

// UnchangedSince implements engine.ViewConfirmer.
func (w *writeTx) UnchangedSince(dataset, id string, mark engine.ViewMark) (bool, error) {
	st, err := w.dataset(dataset, false)
	if err != nil || st == nil || mark == (engine.ViewMark{}) {
		return false, err
	}
	cur := st.meta.viewMark()
	switch {
	case cur.Gen != mark.Gen || cur.Next < mark.Next:
		return false, nil
	case cur.Next == mark.Next:
		return true, nil
	case cur.Next-mark.Next > maxSinceScan:
		return false, nil
	}
	ws := &st.since
	if ws.last == nil {
		ws.last = map[string]uint64{}
		ws.from, ws.to = mark.Next, mark.Next
	}
	if mark.Next < ws.from {
		if err := st.scanWritten(dataset, mark.Next, ws.from); err != nil {
			return false, err
		}
		ws.from = mark.Next
	}
	if cur.Next > ws.to {
		if err := st.scanWritten(dataset, ws.to, cur.Next); err != nil {
			return false, err
		}
		ws.to = cur.Next
	}
	off, written := ws.last[id]
	return !written || off < mark.Next, nil
}

// scanWritten adds the _ids of the log entries in [from, to) to st.since.
func (st *dsState) scanWritten(dataset string, from, to uint64) error {
	end := offsetKey(to)
	c := st.log.Cursor()
	for k, v := c.Seek(offsetKey(from)); k != nil && bytes.Compare(k, end) < 0; k, v = c.Next() {
		off := binary.BigEndian.Uint64(k)
		id, ok := versionID(v)
		if !ok {
			return fmt.Errorf("dataset %q: corrupt version at offset %d", dataset, off)
		}
		if prev, seen := st.since.last[string(id)]; !seen || off > prev {
			st.since.last[string(id)] = off
		}
	}
	return nil
}
