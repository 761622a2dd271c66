// Package boltstore is Ferry's embedded dataset store: every dataset, pipe
// state and run log in one bbolt file.
//
// Layout of the file:
//
//	datasets/<name>/log    big-endian uint64 offset -> version (header + canonical JSON)
//	datasets/<name>/index  _id -> latest offset, hash and deleted flag
//	datasets/<name> "meta" -> JSON metadata (counts, populated, last offset)
//	pipes/<pipe>           -> JSON pipe state (continuation token, ...)
//	runs/<pipe>/<seq>      -> JSON run record
//
// The index is the expensive part of a write: its keys arrive in random
// order, so every new _id dirties a different B+tree leaf. A write
// transaction therefore buffers index updates and applies them sorted at
// commit, and the engine groups many batches into one transaction. The log
// is append-only with sequential keys and is written with a fill percent of
// 1.0, so its pages are packed.
package boltstore
