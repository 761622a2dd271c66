// Package bloom is a fixed-size Bloom filter over 128-bit hashes, for the
// places where a false positive only costs a lookup: the dataset sink's
// "ids this run has not produced before" and the store's "ids not in the
// recent index".
package bloom
