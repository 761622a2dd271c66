// Package bloom is a fixed-size Bloom filter over 128-bit hashes, for the
// places where a false positive only costs a lookup: the index runs'
// stored filters and the store's "ids not in the recent index" (Filter),
// and the dataset sink's "ids this run has not produced before" (Blocked,
// one cache line per key, never stored).
package bloom
