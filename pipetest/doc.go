// Package pipetest runs a config's tests the way `sesam test` runs a
// node's: the input pipes read test data instead of their systems, every
// pipe runs until nothing changes on a temporary store, and each pipe's
// output is compared with the expected output kept beside the config. It
// owns the test directory layout (test.json, testdata/, expected/), the
// comparison (internal properties and ignored paths left out, canonical
// pretty-printed JSON) and the unified diff of a mismatch; `ferry test`
// is its command line and docs/testing.md its user documentation.
//
// A test never reaches a system: sources that would read one are replaced
// by the test data (or read nothing), every HTTP client of the config's
// systems refuses to send, external sinks are captured in a dataset, and
// share pipes are planned, not run (engine.Engine.PlanShare), with their
// lookups answered from test data.
package pipetest
