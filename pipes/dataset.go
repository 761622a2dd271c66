package pipes

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ferrydata/ferry/engine"
)

const datasetSourceSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "dataset source",
  "type": "object",
  "required": ["dataset"],
  "properties": {
    "type": {"const": "dataset"},
    "comment": {},
    "dataset": {"type": "string", "minLength": 1},
    "include_previous_versions": {"type": "boolean"},
    "include_replaced": {"type": "boolean"},
    "supports_signalling": {"type": "boolean"},
    "if_source_empty": {"enum": ["accept", "fail"]},
    "subset": {},
    "completeness": {},
    "initial_completeness": {},
    "require_populated_input": {"type": "boolean"}
  }
}`

// DatasetSource reads a dataset's log incrementally from the pipe's offset.
// By default only the latest version of each _id is yielded (a version
// superseded later in the log is skipped: its successor comes later);
// include_previous_versions yields every version.
type DatasetSource struct {
	Dataset          string
	PreviousVersions bool
}

func newDatasetSource(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	d := &DatasetSource{}
	d.Dataset, _ = cfg["dataset"].(string)
	d.PreviousVersions, _ = cfg["include_previous_versions"].(bool)
	if _, ok := cfg["subset"]; ok {
		return nil, engine.Fieldf("/subset", "not supported yet: dataset source subset")
	}
	return d, nil
}

// SupportsSince is true: the token is the last offset read.
func (d *DatasetSource) SupportsSince() bool { return true }

// InputDatasets names the dataset read.
func (d *DatasetSource) InputDatasets() []string { return []string{d.Dataset} }

// Open starts reading after the token.
func (d *DatasetSource) Open(ctx context.Context, req engine.ReadRequest) (engine.Reader, error) {
	if req.Store == nil {
		return nil, fmt.Errorf("dataset source %q: no store", d.Dataset)
	}
	from := uint64(0)
	if req.Since != "" {
		n, err := strconv.ParseUint(req.Since, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("dataset source %q: bad stored offset %q (reset the pipe)", d.Dataset, req.Since)
		}
		from = n + 1
	}
	return &datasetReader{d: d, store: req.Store, next: from, size: max(req.BatchSize, 1), dec: engine.NewDecoder()}, nil
}

type datasetReader struct {
	d     *DatasetSource
	store engine.Store
	next  uint64
	size  int
	done  bool
	dec   *engine.Decoder
}

func (r *datasetReader) Next(ctx context.Context) (engine.Batch, error) {
	if r.done {
		return engine.Batch{}, engine.EOF
	}
	ents := make([]engine.Entity, 0, r.size)
	var derr error
	start := r.next
	next, err := r.store.Scan(ctx, r.d.Dataset, engine.ScanOptions{From: r.next, Limit: r.size, LatestOnly: !r.d.PreviousVersions}, func(rec engine.Record) error {
		e, err := rec.EntityWith(r.dec)
		if err != nil {
			derr = fmt.Errorf("dataset %q offset %d: %w", r.d.Dataset, rec.Offset, err)
			return derr
		}
		ents = append(ents, e)
		return nil
	})
	if err != nil {
		return engine.Batch{}, err
	}
	r.next = next
	if len(ents) < r.size {
		r.done = true
	}
	if len(ents) == 0 && next == start {
		return engine.Batch{}, engine.EOF
	}
	// The token is the last offset examined, so skipped superseded versions
	// are not examined again.
	return engine.Batch{Entities: ents, Since: strconv.FormatUint(next-1, 10)}, nil
}

func (r *datasetReader) Close() error { return nil }
