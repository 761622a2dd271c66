package pipes

import (
	"context"
	"slices"

	"github.com/ferrydata/ferry/engine"
)

const unionDatasetsSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "union_datasets source",
  "type": "object",
  "required": ["datasets"],
  "properties": {
    "type": {"const": "union_datasets"},
    "comment": {},
    "datasets": {"description": "The datasets, read in turn, each incrementally.", "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "prefix_ids": {"description": "Make _id \"<dataset>:<_id>\" (default true).", "type": "boolean"},
    "supports_signalling": {"description": "Whether changes in the input datasets trigger a run (default: true unless the pump sets a cron or an interval under one hour).", "type": "boolean"},
    "if_source_empty": {"description": "With \"fail\", a full run that reads nothing fails instead of deletion-tracking every entity away.", "enum": ["accept", "fail"]}
  }
}`

// UnionDatasets reads several datasets in turn (list order), each
// incrementally from its own offset, yielding the latest version of every
// changed _id. With prefix_ids (the default) each _id becomes
// "<dataset>:<_id>", so equal ids from different datasets stay apart;
// without it ids are untouched and, in a dataset sink, the one read last
// wins. The token is the one [MergeDatasets] uses.
type UnionDatasets struct {
	Datasets  []string
	PrefixIDs bool
}

func newUnionDatasets(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	ds, err := datasetList(cfg)
	if err != nil {
		return nil, err
	}
	u := &UnionDatasets{Datasets: ds, PrefixIDs: true}
	if p, ok := cfg["prefix_ids"].(bool); ok {
		u.PrefixIDs = p
	}
	return u, nil
}

// SupportsSince is true: the token holds an offset per dataset.
func (u *UnionDatasets) SupportsSince() bool { return true }

// Behind reports whether a dataset has versions past its offset in the
// token since (engine.BehindReporter), so that "ferry run" runs the pipe
// again.
func (u *UnionDatasets) Behind(ctx context.Context, store engine.Store, since string) (bool, error) {
	return multiBehind(ctx, store, "union_datasets", u.Datasets, since)
}

// InputDatasets names the datasets read.
func (u *UnionDatasets) InputDatasets() []string { return slices.Clone(u.Datasets) }

// Open starts reading after the token.
func (u *UnionDatasets) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	r, err := newMultiReader(req, u.Datasets, "union_datasets")
	if err != nil {
		return nil, err
	}
	if u.PrefixIDs {
		r.edit = func(ds string, e engine.Entity) {
			if id, ok := e["_id"].(string); ok {
				e["_id"] = ds + ":" + id
			}
		}
	}
	return r, nil
}
