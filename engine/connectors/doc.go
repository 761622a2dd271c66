// Package connectors records connector instances in a store and turns them
// into config components.
//
// A connector instance is one connected copy of a Sesam connector (a
// directory with manifest.json and templates) under a system id: its
// manifest directory (absolute), its parameters, the datatypes it enables
// and the datatypes whose share (write-back) pipes are enabled. Instances
// live in the store's key-value namespace "connectors", keyed by system id,
// as JSON. Several instances of one connector (two tenants) live side by
// side under different ids.
//
// LoadInstances expands every instance the way the hosted deployer does
// (manifest.Options{Deploy: true}) with the injected variables taken from
// the instance (see Instance.Options), leaves out the share pipes of
// datatypes not listed in Share (a share pipe is the pipe whose _id is
// "<system>-<datatype>-share", the corpus-wide naming convention), and
// returns the components to add to an engine.Config, each instance with its
// own $ENV lookup: the instance's parameters first, then the caller's
// environment (the --env file, then the process environment).
//
// Secret values are never part of an instance record; they live in package
// secrets.
package connectors
