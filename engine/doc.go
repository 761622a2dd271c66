// Package engine owns Ferry's runtime model: entities and their canonical
// form, the dataset store interface, the component registry, configuration
// loading and validation, the compiled plan, the pipe runner and the pumps
// that schedule runs.
//
// Invariants the engine keeps, whatever the Store implementation:
//
//   - A dataset is an append-only log. Offsets are assigned in increasing
//     order and are never reused; a version is never rewritten or dropped
//     (compaction is out of scope).
//   - A new version is appended only when the _id is new or its hash differs
//     from the latest version of that _id.
//   - The entities a run writes to a dataset sink and the pipe's new offset
//     are committed in the same store transaction, so a crash can neither
//     lose a batch nor write it twice.
//
// With several workers on one store (Engine.Cluster, see cluster.go and
// cluster_sched.go) a pipe runs only on the worker holding its lease, and
// its transactions carry the lease (WithLease) so the store can refuse a
// commit from a worker that lost it.
//
// Entities are plain JSON values (map[string]any) whose numbers are
// json.Number, so integers of any size and decimals keep their exact text.
package engine
