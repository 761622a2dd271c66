// Package pipes holds Ferry's built-in sources and transforms: embedded,
// dataset and json sources, the jq transform, and the url system the json
// source reads through. Heavier components live in subpackages (dtl, rest).
// Register adds this package's components to a registry.
package pipes
