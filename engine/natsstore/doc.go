// Package natsstore is an engine.Store on NATS JetStream (nats.go's
// jetstream package), for several Ferry workers sharing one store, and the
// engine.Cluster those workers coordinate through (leases, worker records,
// notifications). docs/scale-out.md describes a deployment; this comment
// says how the store works and why.
//
// # Layout
//
// Everything is named after a prefix (default "ferry"):
//
//   - FERRY_META (subjects ferry.m.>): one subject per record, the newest
//     message is the value (written with Nats-Rollup: sub, so older ones go):
//     dataset metadata (ferry.m.ds.<dataset>), pipe states (ferry.m.pipe.<pipe>),
//     key-value state (ferry.m.kv.<ns>.<key>), pipe leases (ferry.m.lease.<pipe>,
//     per-message TTL), worker sessions (ferry.m.worker.<id>, TTL) and each
//     session's last transaction marker; run records (ferry.m.run.<pipe>)
//     keep their history, trimmed to 1,000 per pipe.
//   - FERRY_D_<dataset> (subjects ferry.d.<dataset>.<base64url _id>): the
//     dataset's log, one message per version. A version's offset is its
//     stream sequence - 1 (minus the sequences of holes, below).
//
// Dataset and key names that are not plain [A-Za-z0-9_-] (or are long) are
// written as "~" + base64url in subjects and stream names.
//
// # Latest version per _id: a subject per entity
//
// Each _id has its own subject, so the server's per-subject index answers
// "the latest version of these ids" (direct get, multi_last, up to 1,000
// subjects per request) without scanning, and keep_versions maps onto the
// stream's max_msgs_per_subject. The alternative, an index the store keeps
// (an in-process map built by reading the log), would make a Put a map
// lookup but costs every worker that takes a pipe over a read of the whole
// dataset first and ~100 bytes of memory per entity per worker. Measured
// on this repository's 2-core machine (BenchmarkUnchanged,
// BenchmarkScanLatest, TestChaosWorkers' datasets): looking up 100 ids per
// round trip runs at 60-80k ids/s, and the log reads at 50-230k versions/s
// depending on the machine's load; so a 1M-entity dataset would cost a
// taking-over worker 5-20 s and 100 MB before its first write, where the
// subject lookups cost nothing up front and about what an unchanged
// re-run's hashing costs anyway. The dataset sink asks for a batch's ids in
// one request (engine.Prefetcher); on a fresh dataset its Bloom filter
// spares the lookups altogether. The server's per-subject index costs its
// memory (roughly 50-100 bytes per _id).
//
// # Commits: a watermark moved by one atomic batch
//
// A write transaction keeps its versions in memory. Commit then
//
//  1. appends each changed dataset's versions to its stream. The first
//     message expects the stream to end at the dataset's committed
//     watermark (Nats-Expected-Last-Sequence) and names the writer's
//     session; the rest follow pipelined, and every acknowledgement must
//     name the next sequence, so nothing else can land in between
//     undetected. Readers never look past the watermark.
//  2. publishes one atomic batch (JetStream batch publish, server 2.12+) on
//     the meta stream: a transaction marker that checks the pipe's lease
//     (expected last sequence of the lease subject), each dataset's new
//     metadata (watermark, counts) expecting the revision the transaction
//     read, the pipe states, key-value writes and run records. The batch
//     lands whole or not at all.
//
// So the versions, the pipe's new offset and the key-value state a source or
// share pipe keeps commit together. Atomic batches hold at most the
// server's max_batch_size messages (1,000 by default): a transaction with
// more metadata records than that (key-value writes count one each) is
// refused before anything is written, with an error that says so.
//
// A worker that dies between the steps leaves versions past a dataset's
// watermark: an uncommitted tail. The next writer of the dataset meets it
// (its first append fails the expectation), reads the tail's session and,
// if that session's record has expired, repairs: it records the tail's
// sequences as a hole in the dataset's metadata, expecting the revision it
// read (so the dead writer can never commit them afterwards, even if it
// was only stalled), then deletes the messages. Offsets skip holes, so
// they stay contiguous. While the tail's session is alive the writer waits
// (tail_wait) and then fails with a clear error; a transaction that finds
// another worker committed to the same dataset meanwhile fails with
// ErrConflict. Every failure leaves the committed state as it was.
//
// A lost acknowledgement of the atomic batch is resolved by reading the
// session's transaction marker; only if that read fails too does Commit
// report an unknown outcome (the next run continues from whatever was
// committed, which is consistent either way).
//
// # Reads
//
// Readers see committed state only: the dataset's metadata gives the
// watermark and holes, and a message past the watermark or in a hole is
// stepped over through the previous-sequence link every version carries.
// Scans read 1,000 versions per request (without headers when the dataset
// has no holes) and judge latest-only with one multi_last request per
// chunk; a ScanCache keeps the read-ahead, so a dataset source paging in
// batches of 100 costs two requests per 1,000 versions.
//
// # Leases and sessions
//
// Every Store registers a session (a worker record with a TTL, renewed
// every third of lease_ttl). A pipe's lease is a message with the same
// TTL, taken and renewed by compare-and-set; a lease whose holder's session
// is gone is free. Its sequence is the fencing token checked by every
// commit made under it (engine.WithLease). A worker that finds its session
// expired (it stalled or was cut off) starts a new one and loses its
// leases; whatever it had not committed is abandoned and repaired by
// others.
package natsstore
