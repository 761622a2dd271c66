package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
)

var _ engine.EntityLister = (*Store)(nil)

// errStop ends an index walk early.
var errStop = errors.New("stop")

// ListEntities lists the latest version of each _id of a dataset in _id
// order, from the two-level index (both levels merged, "recent" winning):
// it seeks to the first _id at or after max(Prefix, After+1) and stops at
// the first _id outside the prefix or after Limit entities, so a page
// costs O(Limit) index and log reads whatever the dataset's size. The
// versions are read in one read transaction and passed to fn after it
// ends.
func (s *Store) ListEntities(ctx context.Context, dataset string, opts engine.ListOptions, fn func(engine.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := []byte(opts.Prefix)
	if opts.After != "" && opts.After >= opts.Prefix {
		// The smallest key after After is After + "\x00".
		start = append([]byte(opts.After), 0)
	}
	prefix := []byte(opts.Prefix)
	var recs []engine.Record
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDatasets).Bucket([]byte(dataset))
		if b == nil {
			return nil
		}
		s.hot.mark(dataset)
		log := b.Bucket(bucketLog)
		x, err := s.datasetIndex(b, dataset)
		if err != nil {
			return fmt.Errorf("dataset %q: %w", dataset, err)
		}
		err = x.forEachFrom(start, func(k, v []byte) error {
			if !bytes.HasPrefix(k, prefix) || (opts.Limit > 0 && len(recs) >= opts.Limit) {
				return errStop
			}
			if !validIndexVal(v) {
				return fmt.Errorf("dataset %q: corrupt index entry for %s", dataset, engine.QuoteID(string(k)))
			}
			off := binary.BigEndian.Uint64(v[:8])
			lv := log.Get(offsetKey(off))
			if lv == nil {
				return fmt.Errorf("dataset %q: index points at missing offset %d for %s", dataset, off, engine.QuoteID(string(k)))
			}
			r, err := decodeVersion(off, lv)
			if err != nil {
				return fmt.Errorf("dataset %q: %w", dataset, err)
			}
			recs = append(recs, r)
			return nil
		})
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}
