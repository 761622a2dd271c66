package engine

import (
	"context"
	"errors"
	"time"
)

// ShareOp is what a share (write-back) run does with an entity, or why it
// sends nothing. The names are the $last_operation values of Sesam's
// transform-share-rest, so share datasets read the same.
type ShareOp string

// Share operations. Insert, update and delete change the system; the
// discard-* operations send no side-effecting request.
const (
	ShareInsert ShareOp = "insert"
	ShareUpdate ShareOp = "update"
	ShareDelete ShareOp = "delete"
	// ShareSkipUnchanged: the desired state equals what was collected
	// ($based_on), or the system already holds it.
	ShareSkipUnchanged ShareOp = "discard-entity-not-changed"
	// ShareSkipModified: the record changed in the system after it was
	// collected; writing would lose that change (a lost write prevented).
	ShareSkipModified ShareOp = "discard-modified-in-system"
	// ShareSkipReplaced: a delete with $replaced: the id moved in a merge,
	// the record itself lives on.
	ShareSkipReplaced ShareOp = "discard-replaced"
	// ShareSkipAlreadyInserted: the share dataset shows the entity (or one
	// of its $ids) was inserted before.
	ShareSkipAlreadyInserted ShareOp = "discard-already-inserted"
	// ShareSkipDeleteNonExistent: a delete of an entity the system never
	// had (no primary key).
	ShareSkipDeleteNonExistent ShareOp = "discard-delete-non-existent"
	// ShareSkipAlreadyDeleted: a delete whose record is already gone.
	ShareSkipAlreadyDeleted ShareOp = "discard-already-deleted"
	// ShareSkipInDoubt: an earlier insert of the entity may or may not
	// have reached the system; nothing is sent until an operator has
	// checked and run `ferry retry`.
	ShareSkipInDoubt ShareOp = "discard-insert-in-doubt"
	// ShareFailed: the entity failed (see ShareAction.Error).
	ShareFailed ShareOp = "error"
)

// SideEffect reports whether op changes the system.
func (op ShareOp) SideEffect() bool {
	return op == ShareInsert || op == ShareUpdate || op == ShareDelete
}

// ShareFailure classifies a failed share action.
type ShareFailure string

// Failure kinds.
const (
	// FailRetry: the write was not applied (an error status, a refused
	// connection); retrying the same desired state may succeed.
	FailRetry ShareFailure = "retry"
	// FailInDoubt: the request may have been applied (a timeout, a lost
	// connection, 500/502/504). The next run settles it by lookup before
	// anything else is sent for the entity.
	FailInDoubt ShareFailure = "in-doubt"
	// FailInvalid: the entity itself is wrong (an insert without $ids, an
	// update without $based_on, a lookup that finds several records);
	// retrying the same desired state cannot succeed, so it goes to the
	// dead-letter dataset at once.
	FailInvalid ShareFailure = "invalid"
)

// ShareAction is one entity's write-back: what was decided and why, what
// was sent, what came back. It is also the intent that the engine commits
// to the store before a side-effecting request, so it must survive a JSON
// round trip (values are plain JSON: json.Number, string, bool, nil,
// []any, map[string]any).
type ShareAction struct {
	// ID is the entity's _id.
	ID string `json:"_id"`
	// Op is the decision (ShareFailed when planning failed).
	Op ShareOp `json:"op"`
	// Reason explains a decision in words (for plans and share records).
	Reason string `json:"reason,omitempty"`
	// Entity is the desired state as planned (after the pipe's other
	// transforms).
	Entity Entity `json:"entity"`
	// Key is the record's primary key in the system (a list for a
	// composite key); nil for an insert.
	Key any `json:"key,omitempty"`
	// Payload is the body an insert or update sends.
	Payload any `json:"payload,omitempty"`
	// Expect is the desired state projected as the live record is
	// compared (what the system shows once an update is applied); BasedOn
	// is the projection of $based_on (what it showed when collected).
	// Resolve compares a looked-up record with both.
	Expect  any `json:"expect,omitempty"`
	BasedOn any `json:"based_on,omitempty"`
	// IdempotencyKey identifies the write across retries and crashes: the
	// same desired state of the same entity gives the same key.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Attempt counts the attempts of this entity's write, this one
	// included (retries across runs count).
	Attempt int `json:"attempt,omitempty"`

	// Outcome.
	Status      int          `json:"status,omitempty"`
	GeneratedID any          `json:"generated_id,omitempty"`
	Error       string       `json:"error,omitempty"`
	Failure     ShareFailure `json:"failure,omitempty"`
	// Recovered marks an outcome found by Resolve after a crash or an
	// in-doubt failure.
	Recovered bool `json:"recovered,omitempty"`
	// Requests counts the HTTP requests made for the action (lookups
	// included).
	Requests int `json:"-"`
}

// Fail marks the action failed.
func (a *ShareAction) Fail(kind ShareFailure, err error) {
	a.Failure, a.Error = kind, err.Error()
}

// Failed reports whether the action failed.
func (a *ShareAction) Failed() bool { return a.Error != "" }

// Resolution is what Sharer.Resolve found out about a journaled write.
type Resolution int

// Resolutions.
const (
	// NotApplied: the system does not show the write; the entity is
	// planned again.
	NotApplied Resolution = iota
	// Applied: the system shows the write; the action's outcome is set.
	Applied
	// InDoubt: there is no way to tell (an insert into a system without
	// idempotency keys or a lookup for inserted records). The entity goes
	// to the dead-letter dataset; `ferry retry` sends it again once an
	// operator has checked the system.
	InDoubt
	// Superseded: the system shows neither the write nor the state it was
	// based on: someone changed the record meanwhile. Nothing is sent; the
	// next collect brings the change in.
	Superseded
)

// ShareRecords reads a share dataset's latest records.
type ShareRecords interface {
	// Record returns the latest share record of _id id (deleted ones
	// included), or false.
	Record(ctx context.Context, id string) (Entity, bool, error)
}

// Sharer writes a pipe's entities to an external system: the share side
// of the connector contract (Sesam's transform-share-rest). A pipe whose
// last transform is a Sharer runs under the engine's write-back protocol
// (see docs/write-back.md):
//
//  1. intents journaled by an earlier run that ended before recording
//     their outcome (a crash, an in-doubt failure) are settled with
//     Resolve first;
//  2. entities in the retry queue are planned and written again;
//  3. a delete circuit breaker counts the run's deletes (WouldDelete)
//     before anything is sent;
//  4. the source is read; per group of entities Plan decides (lookups
//     only), the side-effecting actions are committed to the store as
//     intents, Apply sends them (concurrently, one request in flight per
//     entity), and the share records (Record), the retry queue, the
//     dead-letter dataset and the pipe's offset commit in one transaction
//     that also clears the intents.
//
// Implementations must be safe for concurrent use.
type Sharer interface {
	Transform
	// ShareDataset is the dataset whose records tell which entities were
	// inserted ($generated_id).
	ShareDataset() string
	// Plan decides what to do with e. It may send side-effect-free
	// requests (lookups) and nothing else. Entity-level failures are
	// reported in the action (Fail); the error is for failures that must
	// stop the run.
	Plan(ctx context.Context, e Entity, records ShareRecords) (*ShareAction, error)
	// WouldDelete reports, without requests, whether Plan could decide to
	// delete e.
	WouldDelete(e Entity) bool
	// Apply sends the side-effecting request of a (insert, update, delete)
	// and sets its outcome. The error is for failures that must stop the
	// run; a failed request is reported in the action.
	Apply(ctx context.Context, a *ShareAction) error
	// Resolve finds out what became of a journaled action whose outcome
	// was never recorded. With Applied it sets the action's outcome.
	Resolve(ctx context.Context, a *ShareAction) (Resolution, error)
	// Record returns the share-dataset entity for a settled action; prev
	// is the entity's previous share record (nil when there is none).
	Record(a *ShareAction, prev Entity) Entity
}

// SideEffecter is implemented by transforms that may change an external
// system (REST transforms with side_effects). `ferry share plan` refuses to
// preview a pipe whose transforms have side effects.
type SideEffecter interface {
	SideEffects() bool
}

// ShareOptions are a share pipe's write-back settings (pump keys and the
// sharer's breaker).
type ShareOptions struct {
	// MaxRetries is how often a failed entity is retried in later runs
	// before it goes to the dead-letter dataset (pump
	// max_retries_per_entity, default 5).
	MaxRetries int
	// DeadLetterDataset receives entities that failed for good (pump
	// dead_letter_dataset, default "system:dead-letter:<pipe>").
	DeadLetterDataset string
	// DeleteLimitCount and DeleteLimitFactor bound the deletes of a run:
	// at most max(count, factor × entities in the source dataset); a run
	// that would delete more fails before sending anything, unless run
	// with AcceptDeletes (defaults 100 and 0.1; a negative count turns the
	// breaker off).
	DeleteLimitCount  int64
	DeleteLimitFactor float64
}

// Share pump defaults.
const (
	DefaultMaxRetriesPerEntity = 5
	DefaultDeleteLimitCount    = 100
	DefaultDeleteLimitFactor   = 0.1
)

// ShareCounts counts what a share run did per entity.
type ShareCounts struct {
	Inserted         int64 `json:"inserted"`
	Updated          int64 `json:"updated"`
	Deleted          int64 `json:"deleted"`
	SkippedUnchanged int64 `json:"skipped_unchanged"`
	SkippedModified  int64 `json:"skipped_modified_in_system"`
	SkippedReplaced  int64 `json:"skipped_replaced"`
	// SkippedOther counts discard-already-inserted,
	// discard-delete-non-existent and discard-already-deleted.
	SkippedOther int64 `json:"skipped_other"`
	Failed       int64 `json:"failed"`
	DeadLettered int64 `json:"dead_lettered"`
	// Recovered counts writes settled by lookup after a crash or an
	// in-doubt failure (also counted under their operation).
	Recovered int64 `json:"recovered"`
	// Requests counts HTTP requests, lookups included.
	Requests int64 `json:"requests"`
}

// Each calls fn with every counter's JSON name and value, so that
// reporting code (tables, metrics) needs no list of its own.
func (c ShareCounts) Each(fn func(name string, n int64)) {
	fn("inserted", c.Inserted)
	fn("updated", c.Updated)
	fn("deleted", c.Deleted)
	fn("skipped_unchanged", c.SkippedUnchanged)
	fn("skipped_modified_in_system", c.SkippedModified)
	fn("skipped_replaced", c.SkippedReplaced)
	fn("skipped_other", c.SkippedOther)
	fn("failed", c.Failed)
	fn("dead_lettered", c.DeadLettered)
	fn("recovered", c.Recovered)
	fn("requests", c.Requests)
}

// Add adds o's counts to c.
func (c *ShareCounts) Add(o ShareCounts) {
	c.Inserted += o.Inserted
	c.Updated += o.Updated
	c.Deleted += o.Deleted
	c.SkippedUnchanged += o.SkippedUnchanged
	c.SkippedModified += o.SkippedModified
	c.SkippedReplaced += o.SkippedReplaced
	c.SkippedOther += o.SkippedOther
	c.Failed += o.Failed
	c.DeadLettered += o.DeadLettered
	c.Recovered += o.Recovered
	c.Requests += o.Requests
}

// count adds one settled action.
func (c *ShareCounts) count(a *ShareAction) {
	c.Requests += int64(a.Requests)
	if a.Failed() {
		c.Failed++
		return
	}
	if a.Recovered {
		c.Recovered++
	}
	switch a.Op {
	case ShareInsert:
		c.Inserted++
	case ShareUpdate:
		c.Updated++
	case ShareDelete:
		c.Deleted++
	case ShareSkipUnchanged:
		c.SkippedUnchanged++
	case ShareSkipModified:
		c.SkippedModified++
	case ShareSkipReplaced:
		c.SkippedReplaced++
	default:
		c.SkippedOther++
	}
}

// ErrShareFailures is wrapped by the error of a share run that completed
// but could not write some entities (they are retried by later runs or
// dead-lettered; see the share dataset's $error).
var ErrShareFailures = errors.New("entities failed")

// ErrDeleteBreaker is returned when a share run would delete more records
// than its delete circuit breaker allows; nothing was sent.
var ErrDeleteBreaker = errors.New("delete circuit breaker tripped")

// ShareIntentNamespace and ShareRetryNamespace are the key-value
// namespaces (per pipe) of the write-back journal.
func ShareIntentNamespace(pipe string) string { return "share-intents/" + pipe }

// ShareRetryNamespace is the retry queue of a share pipe.
func ShareRetryNamespace(pipe string) string { return "share-retry/" + pipe }

// ShareHeldNamespace holds the _ids of a share pipe whose insert is in
// doubt.
func ShareHeldNamespace(pipe string) string { return "share-held/" + pipe }

// retryEntry is a share pipe's retry queue entry for one _id.
type retryEntry struct {
	Attempts int       `json:"attempts"`
	Error    string    `json:"error,omitempty"`
	Failure  string    `json:"failure,omitempty"`
	First    time.Time `json:"first_failed"`
	Last     time.Time `json:"last_failed"`
	// Entity is the desired state, kept for sources that cannot be read
	// by _id (see EntitySource).
	Entity Entity `json:"entity,omitempty"`
	// Requeued marks an entry put back by `ferry retry`.
	Requeued bool `json:"requeued,omitempty"`
}

// EntitySource is implemented by sources that can read one entity by _id
// (the dataset source): share pipes retry an entity with its latest
// desired state rather than the one that failed.
type EntitySource interface {
	// Entity returns the source's current entity with this _id; false when
	// the source no longer has it.
	Entity(ctx context.Context, store Store, id string) (Entity, bool, error)
}
