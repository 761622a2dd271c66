// Package since compares continuation tokens ("since" values: the largest
// _updated a source has handed over) and keeps a run's running maximum of
// them. Numbers compare exactly as numbers, anything else as strings
// (ISO 8601 timestamps of one format sort as strings).
package since
