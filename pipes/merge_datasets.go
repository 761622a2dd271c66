package pipes

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/ferrydata/ferry/engine"
)

const mergeDatasetsSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "merge_datasets source",
  "type": "object",
  "required": ["datasets"],
  "properties": {
    "type": {"const": "merge_datasets"},
    "comment": {},
    "datasets": {"description": "The datasets, each read incrementally; _ids are kept as they are.", "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "strategy": {"description": "latest: an _id in several datasets resolves to its newest version (by _ts); all: every version as read. Default latest.", "enum": ["latest", "all"]},
    "supports_signalling": {"description": "Whether changes in the input datasets trigger a run (default: true unless the pump sets a cron or an interval under one hour).", "type": "boolean"},
    "if_source_empty": {"description": "With \"fail\", a full run that reads nothing fails instead of deletion-tracking every entity away.", "enum": ["accept", "fail"]}
  }
}`

// MergeDatasets reads several datasets as one stream of entities whose
// _ids are left untouched (Sesam's merge_datasets source; connectors use
// it to merge SYS-DT-all with the webhook dataset SYS-DT-event2).
//
// Strategy "latest" (the default) resolves an _id present in several
// datasets to its version with the newest _ts (a tie goes to the dataset
// listed first); a deleted version wins like any other, so a delete seen
// by the newest writer is passed on. A version read from one dataset is
// emitted only when it is that winner, so an _id is emitted once per
// change of its winner and a full run emits each _id once. Strategy "all"
// emits every latest version of every dataset as read (datasets in list
// order); when an _id occurs in several, the one read last wins in a
// dataset sink.
//
// The datasets are read in turn, each incrementally from its own offset.
// The continuation token holds the last offset examined per dataset: with
// one dataset the plain number (as the dataset source writes it), with
// several a JSON object {"dataset": offset, ...}; a dataset added to the
// list later is read from the start.
type MergeDatasets struct {
	Datasets []string
	Strategy string
}

func newMergeDatasets(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	ds, err := datasetList(cfg)
	if err != nil {
		return nil, err
	}
	m := &MergeDatasets{Datasets: ds, Strategy: "latest"}
	if s, ok := cfg["strategy"].(string); ok {
		m.Strategy = s
	}
	return m, nil
}

// datasetList reads and checks the "datasets" key shared by
// merge_datasets and union_datasets.
func datasetList(cfg map[string]any) ([]string, error) {
	raw, _ := cfg["datasets"].([]any)
	var out []string
	for i, v := range raw {
		s, _ := v.(string)
		if s == "" {
			return nil, engine.Fieldf(fmt.Sprintf("/datasets/%d", i), "dataset name must be a non-empty string")
		}
		if slices.Contains(out, s) {
			return nil, engine.Fieldf(fmt.Sprintf("/datasets/%d", i), "dataset %q is listed twice", s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, engine.Fieldf("/datasets", "list at least one dataset")
	}
	return out, nil
}

// SupportsSince is true: the token holds an offset per dataset.
func (m *MergeDatasets) SupportsSince() bool { return true }

// Behind reports whether a dataset has versions past its offset in the
// token since (engine.BehindReporter), so that "ferry run" runs the pipe
// again.
func (m *MergeDatasets) Behind(ctx context.Context, store engine.Store, since string) (bool, error) {
	return multiBehind(ctx, store, "merge_datasets", m.Datasets, since)
}

// InputDatasets names the datasets read.
func (m *MergeDatasets) InputDatasets() []string { return slices.Clone(m.Datasets) }

// Open starts reading after the token.
func (m *MergeDatasets) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	r, err := newMultiReader(req, m.Datasets, "merge_datasets")
	if err != nil {
		return nil, err
	}
	if m.Strategy == "latest" && len(m.Datasets) > 1 {
		r.keep = m.isWinner
	}
	return r, nil
}

// isWinner reports whether rec, the latest version of its _id in dataset
// ds, is the newest version of that _id over all datasets.
func (m *MergeDatasets) isWinner(ctx context.Context, store engine.Store, ds string, rec *engine.Record) (bool, error) {
	mine := slices.Index(m.Datasets, ds)
	for i, other := range m.Datasets {
		if other == ds {
			continue
		}
		o, ok, err := store.Get(ctx, other, rec.ID)
		if err != nil {
			return false, fmt.Errorf("dataset %q: %w", other, err)
		}
		if ok && (o.TS > rec.TS || o.TS == rec.TS && i < mine) {
			return false, nil
		}
	}
	return true, nil
}

// multiReader reads several datasets in turn, each from its own offset.
type multiReader struct {
	kind     string
	store    engine.Store
	datasets []string
	next     map[string]uint64 // first offset not examined, per dataset
	cur      int
	size     int
	dec      *engine.Decoder
	// keep, if set, decides whether a record is emitted.
	keep func(ctx context.Context, store engine.Store, ds string, rec *engine.Record) (bool, error)
	// edit, if set, adjusts an emitted entity.
	edit func(ds string, e engine.Entity)
	// caches keeps the store's scan state per dataset (ScanOptions.Cache).
	caches map[string]*engine.ScanCache
}

func newMultiReader(req engine.ReadRequest, datasets []string, kind string) (*multiReader, error) {
	if req.Store == nil {
		return nil, fmt.Errorf("%s source: no store", kind)
	}
	next, err := parseMultiToken(req.Since, datasets)
	if err != nil {
		return nil, fmt.Errorf("%s source: %w", kind, err)
	}
	return &multiReader{kind: kind, store: req.Store, datasets: datasets, next: next, size: max(req.BatchSize, 1), dec: engine.NewDecoder()}, nil
}

func (r *multiReader) Next(ctx context.Context) (engine.Batch, error) {
	for r.cur < len(r.datasets) {
		ds := r.datasets[r.cur]
		start := r.next[ds]
		ents := make([]engine.Entity, 0, r.size)
		passed := 0
		if r.caches == nil {
			r.caches = map[string]*engine.ScanCache{}
		}
		if r.caches[ds] == nil {
			r.caches[ds] = &engine.ScanCache{}
		}
		end, err := r.store.Scan(ctx, ds, engine.ScanOptions{From: start, Limit: r.size, LatestOnly: true, Cache: r.caches[ds]}, func(rec engine.Record) error {
			passed++
			if r.keep != nil {
				ok, err := r.keep(ctx, r.store, ds, &rec)
				if err != nil || !ok {
					return err
				}
			}
			e, err := rec.EntityWith(r.dec)
			if err != nil {
				return fmt.Errorf("dataset %q offset %d: %w", ds, rec.Offset, err)
			}
			if r.edit != nil {
				r.edit(ds, e)
			}
			ents = append(ents, e)
			return nil
		})
		if err != nil {
			return engine.Batch{}, fmt.Errorf("%s source: %w", r.kind, err)
		}
		if passed < r.size {
			r.cur++ // this dataset is exhausted for this run
		}
		if end == start {
			continue
		}
		r.next[ds] = end
		return engine.Batch{Entities: ents, Since: formatMultiToken(r.datasets, r.next)}, nil
	}
	return engine.Batch{}, engine.EOF
}

func (r *multiReader) Close() error { return nil }

// parseMultiToken decodes a token written by formatMultiToken into the
// first offset to read per dataset.
func parseMultiToken(since string, datasets []string) (map[string]uint64, error) {
	next := make(map[string]uint64, len(datasets))
	if since == "" {
		return next, nil
	}
	if len(datasets) == 1 {
		if n, err := strconv.ParseUint(since, 10, 64); err == nil {
			next[datasets[0]] = n + 1
			return next, nil
		}
	}
	var last map[string]uint64
	if err := json.Unmarshal([]byte(since), &last); err != nil {
		return nil, fmt.Errorf("bad stored token %q (reset the pipe)", since)
	}
	for _, ds := range datasets {
		if n, ok := last[ds]; ok {
			next[ds] = n + 1
		}
	}
	return next, nil
}

// formatMultiToken encodes the last offset examined per dataset: a plain
// number for one dataset (compatible with the dataset source and the
// engine's "behind" check), else a JSON object with sorted keys.
func formatMultiToken(datasets []string, next map[string]uint64) string {
	if len(datasets) == 1 {
		n := next[datasets[0]]
		if n == 0 {
			return ""
		}
		return strconv.FormatUint(n-1, 10)
	}
	last := map[string]uint64{}
	for _, ds := range datasets {
		if n := next[ds]; n > 0 {
			last[ds] = n - 1
		}
	}
	if len(last) == 0 {
		return ""
	}
	b, _ := json.Marshal(last) // map[string]uint64 cannot fail; keys sorted
	return string(b)
}
