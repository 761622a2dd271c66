package pipes

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/dtl"
)

const datasetSourceSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "dataset source",
  "type": "object",
  "required": ["dataset"],
  "properties": {
    "type": {"const": "dataset"},
    "comment": {},
    "dataset": {"description": "The dataset to read, incrementally from the pipe's offset.", "type": "string", "minLength": 1},
    "include_previous_versions": {"description": "Emit every version since the offset, not only the latest per _id.", "type": "boolean"},
    "include_replaced": {"description": "Sesam key, accepted; no effect in Ferry.", "type": "boolean"},
    "supports_signalling": {"description": "Whether changes in the input datasets trigger a run (default: true unless the pump sets a cron or an interval under one hour).", "type": "boolean"},
    "if_source_empty": {"description": "With \"fail\", a full run that reads nothing fails instead of deletion-tracking every entity away.", "enum": ["accept", "fail"]},
    "subset": {"description": "A DTL equality [\"eq\", EXPR, VALUE] over _S: only entities for which it holds are emitted (the offset still advances over the others)."},
    "completeness": {"description": "Sesam key, accepted; no effect in Ferry."},
    "initial_completeness": {"description": "Sesam key, accepted; no effect in Ferry."},
    "require_populated_input": {"description": "Sesam key, accepted; no effect in Ferry.", "type": "boolean"}
  }
}`

// DatasetSource reads a dataset's log incrementally from the pipe's offset.
// By default only the latest version of each _id is yielded (a version
// superseded later in the log is skipped: its successor comes later);
// include_previous_versions yields every version.
//
// With a subset (SPEC d: "subset": ["eq", EXPR, VALUE]) only the versions
// whose EXPR equals VALUE are yielded. EXPR is a DTL expression over the
// entity (_S), compiled once when the pipe is built; VALUE is a DTL
// expression too, evaluated once then (a literal such as true or
// "company"). A version matches when EXPR's value equals VALUE as DTL's
// "eq" compares them, or when any element of EXPR's value (a list result)
// does, as Sesam's subset index holds one entry per list element. The
// token advances over versions that do not match, so they are not
// examined again. Decision: the subset is evaluated on each version as it
// is: an entity that changes so that it leaves the subset is not emitted
// (not even deleted) by an incremental run; a full run's deletion tracking
// removes it downstream. A deleted version is emitted only when it still
// matches (Ferry keeps a deleted entity's content when it tracks
// deletions).
type DatasetSource struct {
	Dataset          string
	PreviousVersions bool
	// Subset, when not nil, selects the versions yielded.
	Subset *Subset
}

// Subset is a compiled dataset source subset: ["eq", Expr, Value].
type Subset struct {
	Expr  *dtl.Expr
	Value []any // the value's sequence, evaluated once
}

// Match reports whether entity belongs to the subset.
func (s *Subset) Match(ctx context.Context, entity engine.Entity) (bool, error) {
	got, err := s.Expr.Eval(ctx, entity)
	if err != nil {
		return false, err
	}
	want := dtl.Stored(s.Value)
	if dtl.Equal(dtl.Stored(got), want) {
		return true, nil
	}
	for _, v := range got {
		if l, isList := v.([]any); isList {
			for _, e := range l {
				if dtl.Equal(e, want) {
					return true, nil
				}
			}
		}
		if dtl.Equal(v, want) {
			return true, nil
		}
	}
	return false, nil
}

func newDatasetSource(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	d := &DatasetSource{}
	d.Dataset, _ = cfg["dataset"].(string)
	d.PreviousVersions, _ = cfg["include_previous_versions"].(bool)
	if raw, ok := cfg["subset"]; ok {
		s, err := compileSubset(raw)
		if err != nil {
			return nil, err
		}
		d.Subset = s
	}
	return d, nil
}

// compileSubset compiles ["eq", EXPR, VALUE]; errors point below /subset.
func compileSubset(raw any) (*Subset, error) {
	l, ok := raw.([]any)
	if !ok || len(l) != 3 || l[0] != "eq" {
		return nil, engine.Fieldf("/subset", `subset must be ["eq", expression, value]`)
	}
	opts := dtl.DefaultOptions() // no Hopper: a hop in a subset fails when evaluated
	expr, err := dtl.CompileExpr(l[1], "subset[1]", opts)
	if err != nil {
		return nil, subsetFieldError(err)
	}
	valExpr, err := dtl.CompileExpr(l[2], "subset[2]", opts)
	if err != nil {
		return nil, subsetFieldError(err)
	}
	val, err := valExpr.Eval(context.Background(), nil)
	if err != nil {
		return nil, subsetFieldError(err)
	}
	return &Subset{Expr: expr, Value: val}, nil
}

// subsetFieldError turns a DTL error about the subset into a field error
// pointing at the bad expression ("subset[1][2]" becomes "/subset/1/2").
func subsetFieldError(err error) error {
	var de *dtl.Error
	if !errors.As(err, &de) || de.Path == "" {
		return engine.Fieldf("/subset", "DTL: %v", err)
	}
	return engine.Fieldf(dtlPointer(de.Path), "DTL: %v", de.Err)
}

// SupportsSince is true: the token is the last offset read.
func (d *DatasetSource) SupportsSince() bool { return true }

// Behind reports whether the dataset has versions past the token since
// (engine.BehindReporter), so that "ferry run" runs the pipe again.
func (d *DatasetSource) Behind(ctx context.Context, store engine.Store, since string) (bool, error) {
	var next uint64
	if since != "" {
		n, err := strconv.ParseUint(since, 10, 64)
		if err != nil {
			return false, fmt.Errorf("dataset source %q: bad stored offset %q (reset the pipe)", d.Dataset, since)
		}
		next = n + 1
	}
	return datasetBehind(ctx, store, d.Dataset, next)
}

// datasetBehind reports whether dataset has a version at or after next,
// the first offset a reader has not examined.
func datasetBehind(ctx context.Context, store engine.Store, dataset string, next uint64) (bool, error) {
	info, ok, err := store.Dataset(ctx, dataset)
	if err != nil || !ok || info.Versions == 0 {
		return false, err
	}
	return info.LastOffset >= next, nil
}

// multiBehind is Behind for the multi-dataset token of merge_datasets and
// union_datasets: true when any dataset has a version its offset in since
// does not cover (a dataset missing from the token counts from 0).
func multiBehind(ctx context.Context, store engine.Store, kind string, datasets []string, since string) (bool, error) {
	next, err := parseMultiToken(since, datasets)
	if err != nil {
		return false, fmt.Errorf("%s source: %w", kind, err)
	}
	for _, ds := range datasets {
		behind, err := datasetBehind(ctx, store, ds, next[ds])
		if err != nil || behind {
			return behind, err
		}
	}
	return false, nil
}

// InputDatasets names the dataset read.
func (d *DatasetSource) InputDatasets() []string { return []string{d.Dataset} }

// Entity returns the latest version of id (engine.EntitySource: a share
// pipe retries an entity with its current desired state). An entity
// outside the subset is not found.
func (d *DatasetSource) Entity(ctx context.Context, store engine.Store, id string) (engine.Entity, bool, error) {
	rec, ok, err := store.Get(ctx, d.Dataset, id)
	if err != nil || !ok {
		return nil, false, err
	}
	e, err := rec.Entity()
	if err != nil {
		return nil, false, fmt.Errorf("dataset %q entity %s: %w", d.Dataset, engine.QuoteID(id), err)
	}
	if d.Subset != nil {
		if in, err := d.Subset.Match(ctx, e); err != nil || !in {
			return nil, false, err
		}
	}
	return e, true, nil
}

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
	// deferDecode: Next hands over records for the engine to decode
	// (engine.DecodeDeferrer).
	deferDecode bool
	// cache lets the store keep which versions are superseded across
	// this reader's scans.
	cache engine.ScanCache
}

func (r *datasetReader) Next(ctx context.Context) (engine.Batch, error) {
	if r.done {
		return engine.Batch{}, engine.EOF
	}
	var ents []engine.Entity
	var recs []engine.Record
	if r.deferDecode {
		recs = make([]engine.Record, 0, r.size)
	} else {
		ents = make([]engine.Entity, 0, r.size)
	}
	passed := 0 // versions the scan handed over, matching the subset or not
	start := r.next
	next, err := r.store.Scan(ctx, r.d.Dataset, engine.ScanOptions{From: r.next, Limit: r.size, LatestOnly: !r.d.PreviousVersions, Cache: &r.cache}, func(rec engine.Record) error {
		passed++
		if r.deferDecode {
			recs = append(recs, rec)
			return nil
		}
		e, err := rec.EntityWith(r.dec)
		if err != nil {
			return fmt.Errorf("dataset %q offset %d: %w", r.d.Dataset, rec.Offset, err)
		}
		if r.d.Subset != nil {
			ok, err := r.d.Subset.Match(ctx, e)
			if err != nil {
				return fmt.Errorf("dataset %q offset %d: subset: %w", r.d.Dataset, rec.Offset, err)
			}
			if !ok {
				return nil
			}
		}
		ents = append(ents, e)
		return nil
	})
	if err != nil {
		return engine.Batch{}, err
	}
	r.next = next
	if passed < r.size {
		r.done = true
	}
	if next == start {
		return engine.Batch{}, engine.EOF
	}
	// The token is the last offset examined, so skipped superseded versions
	// and versions outside the subset are not examined again.
	b := engine.Batch{Entities: ents, Since: strconv.FormatUint(next-1, 10)}
	if r.deferDecode {
		name := r.d.Dataset
		b.Records = recs
		b.Decode = func(d *engine.Decoder) ([]engine.Entity, error) {
			ents := make([]engine.Entity, 0, len(recs))
			for i := range recs {
				e, err := recs[i].EntityWith(d)
				if err != nil {
					return nil, fmt.Errorf("dataset %q offset %d: %w", name, recs[i].Offset, err)
				}
				ents = append(ents, e)
			}
			return ents, nil
		}
	}
	return b, nil
}

// DeferDecode (engine.DecodeDeferrer): batches come undecoded, unless a
// subset has to look at the entities to choose them.
func (r *datasetReader) DeferDecode() { r.deferDecode = r.d.Subset == nil }

func (r *datasetReader) Close() error { return nil }
