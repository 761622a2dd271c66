package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"sort"
)

// Batch is what a source yields: entities plus the continuation token that
// holds once they are committed.
type Batch struct {
	Entities []Entity
	// Since is the source's continuation token after this batch; "" means
	// the source has none (the pipe's stored token is left as it is).
	Since string
	// Commit, when set, is called in the store transaction that commits
	// this batch (after the sink has written it, before the pipe's token),
	// so that state a source keeps beside its output (e.g. the merge
	// source's indexes) changes atomically with it. On a failed commit
	// nothing of it is kept and the batch is read again by the next run.
	Commit func(tx WriteTx) error
	// Decode, when set, gives the batch's entities instead of Entities:
	// a reader asked to defer decoding (DecodeDeferrer) hands over what
	// it read undecoded, and the engine decodes it on whichever goroutine
	// transforms the batch, with that goroutine's Decoder.
	Decode func(d *Decoder) ([]Entity, error)
	// Records, when set with Decode, are the stored records Decode would
	// decode, for a transform that can work on their text
	// (RecordTransform).
	Records []Record
}

// DecodeDeferrer is a Reader that can leave decoding its batches to the
// engine (Batch.Decode), so that batches are decoded in parallel when the
// pipe's transforms run in parallel.
type DecodeDeferrer interface {
	// DeferDecode asks for Batch.Decode from now on.
	DeferDecode()
}

// ReadRequest tells a source where to start.
type ReadRequest struct {
	// Since is the stored continuation token; "" on a full run.
	Since     string
	Full      bool
	BatchSize int
	// Store gives dataset sources their data.
	Store Store
}

// Source produces entities. Build it once per pipe; Open is called per run.
type Source interface {
	Open(ctx context.Context, req ReadRequest) (Reader, error)
	// SupportsSince reports whether the source can continue from a token;
	// when false every run is a full run.
	SupportsSince() bool
}

// Reader yields a run's batches. Next returns io.EOF after the last batch.
type Reader interface {
	Next(ctx context.Context) (Batch, error)
	Close() error
}

// EOF is returned by Reader.Next after the last batch.
var EOF = io.EOF

// RawBatch is a batch of entities still in JSON text.
type RawBatch struct {
	Values [][]byte
	Since  string
	// Locate names where value i came from, for error messages (e.g.
	// "in.json: entity 7"); nil: "entity <i>".
	Locate func(i int) string
	// part: a chunk of a larger batch that more chunks follow (set by
	// the engine when it cuts batches to the pipe's batch size).
	part bool
}

// RawReader is implemented by readers that can hand over entities as JSON
// text. When a pipe has no transforms and a dataset sink, the engine then
// computes the stored form straight from the text (PrepareRaw) instead of
// decoding every entity into a map first. RawOK reports whether this reader
// can (e.g. not when it must look into entities for its token).
type RawReader interface {
	RawOK() bool
	NextRaw(ctx context.Context) (RawBatch, error)
}

// PartialReader is implemented by readers that can read only part of the
// source on a full run: a REST source whose first run starts from its
// initial_since_value (a connector instance connected with --history
// since-connected or a date) fetches only what changed since then. When
// Partial reports true after Open, the engine treats the run as
// incremental: entities the run did not read were not seen, which says
// nothing about whether they still exist, so there is no deletion
// tracking (and if_source_empty does not apply).
type PartialReader interface {
	Partial() bool
}

// InputDatasets is implemented by sources that read datasets; the engine
// uses it for the pipe graph, signalling and populated checks.
type InputDatasets interface {
	InputDatasets() []string
}

// Transform maps a batch of entities to 0..n entities each. Implementations
// are compiled once per pipe and must be safe for concurrent use.
type Transform interface {
	Transform(ctx context.Context, in []Entity) ([]Entity, error)
}

// RecordTransform is implemented by transforms that can map a stored
// record's text straight to the stored form of their output, without
// decoding it (the jq transform's text path). The engine uses it when it
// is a pipe's only transform, the sink writes a dataset, and the source
// is a dataset or hands over text (RawReader).
type RecordTransform interface {
	// RecordPreparer returns a preparer for one goroutine's use, or nil
	// when this transform has no text path.
	RecordPreparer() RecordPreparer
}

// RecordPreparer maps one record at a time (see RecordTransform).
type RecordPreparer interface {
	// PrepareRecord appends to arena the stored form of the one entity
	// the transform makes of rec, as PrepareAppend would write it after
	// Transform. It returns false when it cannot be sure of that; the
	// engine then decodes rec and runs Transform, so the result is the
	// same either way.
	PrepareRecord(rec *Record, arena []byte) (Prepared, []byte, bool)
	// PrepareText is PrepareRecord for an entity that comes as text from
	// a source other than a dataset (RawReader), given as its canonical
	// text with every key (CanonicalObject) and without the keys a
	// record adds.
	PrepareText(text []byte, arena []byte) (Prepared, []byte, bool)
}

// Sink consumes a pipe's output.
type Sink interface {
	// OutputDataset is the dataset the sink writes, "" for none.
	OutputDataset() string
}

// ExternalSink writes outside the store (REST, null, ...). The engine
// commits the pipe's continuation token after Write returns nil.
type ExternalSink interface {
	Sink
	Write(ctx context.Context, batch []Entity) error
}

// TxSink writes into the store inside the engine's transactions, so the
// entities and the pipe's token commit together.
type TxSink interface {
	Sink
	// StartRun is called once per run before any batch.
	StartRun(ctx context.Context, run *RunContext) (SinkRun, error)
}

// SinkRun is one run of a TxSink.
type SinkRun interface {
	// Write applies a batch of prepared entities within tx.
	Write(ctx context.Context, tx WriteTx, batch []Prepared, ts int64) error
	// Finish runs after the last batch of a complete run, in the final
	// transaction (deletion tracking, populated flag).
	Finish(ctx context.Context, tx WriteTx, ts int64) error
	// SingleTransaction asks the engine to run the whole run in one
	// transaction (e.g. an armed circuit breaker that must be able to
	// leave the dataset untouched).
	SingleTransaction() bool
}

// DeletionTrackingSinkRun is a SinkRun that reports whether the run
// ends with deletion tracking that may delete something: a full run into
// a dataset that holds entities. The runner then keeps the pipe's rescan
// request in every commit of the run but the final one (persisting it
// first), so that a run that stops before it completes is done again in
// full rather than going on incrementally, which would skip the
// deletions.
type DeletionTrackingSinkRun interface {
	SinkRun
	TracksDeletions() bool
}

// CheckpointingSinkRun is a SinkRun whose Finish may write more than a
// transaction should hold: deletion tracking that deletes a tenth of a
// 10M-entity dataset writes a million versions. Before Finish, the
// runner gives it checkpoint, which commits what the transaction holds
// and returns the transaction to go on in, and the bytes of new versions
// a transaction should stay within. A checkpoint commits as a group
// does, the run not complete: for a source with tokens the pipe's state
// keeps the rescan request (DeletionTrackingSinkRun), which only the
// final commit clears, so after a crash between checkpoints the next run
// is full and does again what is missing (the versions committed stand,
// each a true state of the entity). The runner gives none to a run that
// must be a single transaction (SingleTransaction).
type CheckpointingSinkRun interface {
	SinkRun
	SetCheckpoint(checkpoint func() (WriteTx, error), maxBytes int)
}

// LazySinkRun is implemented by sink runs that accept lazy Prepared values
// (Prepared.Lazy): for a pipe without transforms whose source hands over
// JSON text, the engine then skips canonicalizing text it expects to be
// unchanged, and the sink checks with WriteTx.SameRaw and resolves what
// is not.
type LazySinkRun interface {
	SinkRun
	AcceptsLazy() bool
}

// LazyStarter is implemented by lazy sink runs that can tell, before the
// first entity, that most of the run will likely arrive unchanged (a
// dataset that already holds entities). The engine then hands text over
// lazily from the first batch instead of learning it from the first
// group: a re-run of a full sync otherwise canonicalizes and looks up
// its first groups on the committer alone. A wrong guess costs little:
// what the view finds changed is prepared on the workers, and the first
// group's figures switch lazy off.
type LazyStarter interface {
	StartLazy() bool
}

// ViewingSinkRun is a LazySinkRun that can check a batch's lazy entities
// against a read view of the store before the committer sees them
// (RawViewer); the engine calls View on the producer's workers, several
// batches at once, so it must be safe for concurrent use. It reports
// whether it looked: entities it looked at and did not mark (SameIn) are
// changed or new, and the engine resolves them on the worker too.
type ViewingSinkRun interface {
	LazySinkRun
	View(ctx context.Context, batch []Prepared) (bool, error)
}

// RunContext describes the run to a sink.
type RunContext struct {
	Pipe  string
	Full  bool
	Store Store
	// InputsPopulated is true when every input dataset of the source is
	// populated (or the source reads none).
	InputsPopulated bool
	Stats           *RunStats
	// AcceptDeletes lifts the sink's safety limits for this run: the
	// deletion guard and circuit breakers (RunOptions.AcceptDeletes).
	AcceptDeletes bool
}

// RunStats counts what a run did.
type RunStats struct {
	Read, Written, Unchanged, Deleted int64
	// Share counts a share pipe's write-back per entity.
	Share ShareCounts
	// Refused counts deletions a sink planned but refused to make (the
	// deletion guard), for RunRecord.WouldDelete.
	Refused int64

	// wouldWrite and wouldDelete are the written and deleted counts
	// including rolled-back transactions, set by the runner (settled).
	wouldWrite, wouldDelete int64
	settled                 bool
}

// Kind is a component category.
type Kind string

// Component kinds.
const (
	KindSource    Kind = "source"
	KindTransform Kind = "transform"
	KindSink      Kind = "sink"
	KindSystem    Kind = "system"
	// KindTemplate are the built-in transform templates of the "template"
	// transform (Sesam's transform-collect-rest and friends).
	KindTemplate Kind = "template"
)

// Spec documents a component type and carries its JSON Schema.
type Spec struct {
	Summary string
	// Schema is a JSON Schema (draft 4/7) for the component's config
	// object. Keys it does not list are tolerated with a warning.
	Schema string
	// Status is "stable", "beta" or "unsupported" (recognised for
	// compatibility reporting but not runnable yet).
	Status string
}

// Build gives a component constructor what it may need. Constructors
// parse and validate; they do no I/O.
type Build struct {
	Pipe   string // pipe _id ("" for systems)
	Path   string // JSON pointer of the component within its config file
	Config *Config
	Logger *slog.Logger
	// Registry lets composite components build nested ones.
	Registry *Registry
	systems  map[string]any
	warn     func(pointer, msg string)
}

// Warnf reports a warning about the component at pointer (relative to the
// component's config), as the compiler reports unknown keys.
func (b *Build) Warnf(pointer, format string, args ...any) {
	if b.warn != nil {
		b.warn(pointer, fmt.Sprintf(format, args...))
	}
}

// Constructors per kind.
type (
	SourceFunc    func(b *Build, cfg map[string]any) (Source, error)
	TransformFunc func(b *Build, cfg map[string]any) (Transform, error)
	SinkFunc      func(b *Build, cfg map[string]any) (Sink, error)
	SystemFunc    func(b *Build, cfg map[string]any) (any, error)
)

type entry struct {
	kind  Kind
	name  string
	spec  Spec
	build any
}

// Registry maps component types to their specs and constructors. It is a
// plain value: build one with NewRegistry and register what you need.
type Registry struct {
	entries map[Kind]map[string]*entry
	schemas *schemaCache
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{entries: map[Kind]map[string]*entry{}, schemas: newSchemaCache()}
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9]*([_:-][a-z0-9]+)*$`)

func (r *Registry) add(kind Kind, name string, spec Spec, build any) {
	if !validName.MatchString(name) {
		panic(fmt.Sprintf("engine: invalid %s type name %q", kind, name))
	}
	m := r.entries[kind]
	if m == nil {
		m = map[string]*entry{}
		r.entries[kind] = m
	}
	if prev, dup := m[name]; dup {
		switch {
		case build == nil:
			return // an implementation (or another placeholder) is already there
		case prev.build != nil:
			panic(fmt.Sprintf("engine: %s type %q registered twice", kind, name))
		}
		// A real implementation replaces an "unsupported" placeholder.
	}
	m[name] = &entry{kind: kind, name: name, spec: spec, build: build}
}

// RegisterSource adds a source type. It panics on a duplicate or invalid
// name: registration happens at program start and is a programming error.
func (r *Registry) RegisterSource(name string, spec Spec, fn SourceFunc) {
	r.add(KindSource, name, spec, fn)
}

// RegisterTransform adds a transform type.
func (r *Registry) RegisterTransform(name string, spec Spec, fn TransformFunc) {
	r.add(KindTransform, name, spec, fn)
}

// RegisterSink adds a sink type.
func (r *Registry) RegisterSink(name string, spec Spec, fn SinkFunc) {
	r.add(KindSink, name, spec, fn)
}

// RegisterSystem adds a system type ("rest" for "system:rest").
func (r *Registry) RegisterSystem(name string, spec Spec, fn SystemFunc) {
	r.add(KindSystem, name, spec, fn)
}

// RegisterTemplate adds a built-in transform template: a "template"
// transform with "template": name is built by fn, which receives the
// template's "properties" object as cfg; spec.Schema validates that object.
func (r *Registry) RegisterTemplate(name string, spec Spec, fn TransformFunc) {
	r.add(KindTemplate, name, spec, fn)
}

// RegisterUnsupported records a type Ferry recognises but cannot run yet,
// so validation reports "not supported yet" instead of "unknown". A real
// registration of the same name, before or after, wins.
func (r *Registry) RegisterUnsupported(kind Kind, name, summary string) {
	r.add(kind, name, Spec{Summary: summary, Status: "unsupported"}, nil)
}

func (r *Registry) lookup(kind Kind, name string) (*entry, bool) {
	e, ok := r.entries[kind][name]
	return e, ok
}

// Names lists the registered type names of a kind, sorted.
func (r *Registry) Names(kind Kind) []string {
	var out []string
	for n := range r.entries[kind] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// SpecOf returns a registered type's spec.
func (r *Registry) SpecOf(kind Kind, name string) (Spec, bool) {
	e, ok := r.lookup(kind, name)
	if !ok {
		return Spec{}, false
	}
	return e.spec, true
}

// ErrUnsupported marks component types that are recognised but not
// implemented yet.
var ErrUnsupported = errors.New("not supported yet")
