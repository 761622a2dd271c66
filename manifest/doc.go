// Package manifest loads Sesam connector manifests (manifest.json) and
// expands a connector into its systems and pipes exactly as sesam-py's
// expand_connector_config does, optionally with the hosted deployer's
// injected configuration (Options.Deploy).
//
// It owns: the manifest JSON Schema (schema.json, embedded), ordered JSON
// decoding with Python's duplicate-key rule, the expansion algorithm
// (variables, parameters carried over, booleans, WARNING comments, the
// "-transform" shim pipe), the injected pump schedules, and writing an
// expanded connector to disk (WriteExpanded). Template rendering itself is
// package templates.
package manifest
