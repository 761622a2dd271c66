// Package pipes holds Ferry's built-in sources and transforms: the
// embedded, dataset (with subset), json, merge (with its indexes in the
// store, see docs/merge.md), merge_datasets, union_datasets and
// http_endpoint sources; the jq, dtl, emit_children and template
// (transform-collect-rest) transforms; the url system the json source reads
// through; and the store-backed lookup index DTL hops use. Heavier pieces
// live in subpackages (dtl: the DTL interpreter; rest: REST systems).
// Register and RegisterCollect add this package's components to a registry.
package pipes
