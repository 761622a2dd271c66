// Package boltstore is Ferry's embedded dataset store: every dataset, pipe
// state and run log in one bbolt file.
//
// Layout of the file:
//
//	datasets/<name>/log      big-endian uint64 offset -> version (header + canonical JSON)
//	datasets/<name>/recent   _id -> latest offset, hash and deleted flag (small commits)
//	datasets/<name>/ixruns   the rest of the _id index as sorted runs (runs.go)
//	datasets/<name>/index    the _id index of stores from before the runs (read-only)
//	datasets/<name> "meta" -> JSON metadata (counts, populated, last offset,
//	                         the first offset of a version that names a previous one)
//	datasets/<name> "ixlevels", "ixl0merge" -> the runs of each level, the
//	                         merge of level 0 in progress (runs.go)
//	pipes/<pipe>             -> JSON pipe state (continuation token, ...)
//	runs/<pipe>/<seq>        -> JSON run record
//
// The index is the expensive part of a write: its keys arrive in random
// order, and in a B+tree every new _id dirties a different leaf, which
// bbolt copies whole at commit. A write transaction therefore buffers
// index updates and, when there are enough of them, writes them as one
// sorted run; runs are merged level by level, sequentially (an LSM tree
// inside bbolt, so a commit is still atomic and a crash leaves the last
// commit's index). Merge steps are computed in read transactions beside
// the writer and installed by a later write transaction (bgmerge.go). The log is append-only with sequential keys and is
// written with a fill percent of 1.0, so its pages are packed.
//
// Lookups that decide whether text is unchanged can run in read
// transactions beside the writer (view.go): the writer then confirms, from
// the dataset's next offset and the log written since, that nothing
// changed the _id after the read. A lookup finds a run's block through the
// run's directory of block offsets (blockdir.go), which stays valid until
// a commit moves one of the run's blocks (dirmoves.go).
package boltstore
