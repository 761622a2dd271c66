package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/natsstore"
)

// storeFlagHelp documents --store.
const storeFlagHelp = "where datasets live: bolt (default: the bbolt file in --data) or nats://host:4222[,host:4222...][?prefix=ferry&replicas=3&lease_ttl=15s] for a NATS JetStream cluster shared by several workers (docs/scale-out.md)"

// isNATS reports whether --store names a NATS server.
func isNATS(f *flags) bool {
	return f.store != nil && (strings.HasPrefix(*f.store, "nats://") || strings.HasPrefix(*f.store, "tls://"))
}

// openStore opens the store --store names: the bbolt file in --data (the
// default; a --store value that is a directory means that directory) or a
// NATS JetStream server. readOnly applies to bbolt only.
func (c *cli) openStore(f *flags, readOnly bool) (engine.Store, bool) {
	s, err := c.storeOpen(f, readOnly)
	if err != nil {
		c.errorf("%v", err)
		return nil, false
	}
	return s, true
}

// storeOpen is openStore returning the error.
func (c *cli) storeOpen(f *flags, readOnly bool) (engine.Store, error) {
	if isNATS(f) {
		opts, err := natsstore.ParseURL(*f.store)
		if err != nil {
			return nil, err
		}
		opts.Logger = c.logger()
		host, _ := os.Hostname()
		opts.Name = "ferry " + host
		return natsstore.Open(context.Background(), opts)
	}
	data := *f.data
	if f.store != nil && *f.store != "" && *f.store != "bolt" {
		data = *f.store
		*f.data = data
	}
	opts := boltstore.Options{ReadOnly: readOnly, MaxResident: int64(*f.mapped) << 20}
	if f.noSync != nil {
		opts.NoSync = *f.noSync
	}
	if readOnly {
		if _, err := os.Stat(filepath.Join(data, boltstore.FileName)); err != nil {
			return nil, fmt.Errorf("no store in %s (run a config first, or pass --data DIR)", data)
		}
	}
	return boltstore.Open(data, opts)
}

// storeExists reports whether there is a store to read (a NATS server
// always counts).
func storeExists(f *flags) bool {
	if isNATS(f) {
		return true
	}
	data := *f.data
	if f.store != nil && *f.store != "" && *f.store != "bolt" {
		data = *f.store
	}
	_, err := os.Stat(filepath.Join(data, boltstore.FileName))
	return err == nil
}

// clusterOf returns the engine.Cluster of a store shared by workers (the
// NATS store), or nil.
func clusterOf(s engine.Store) (engine.Cluster, error) {
	ns, ok := s.(*natsstore.Store)
	if !ok {
		return nil, nil
	}
	c, err := ns.Cluster()
	if err != nil {
		return nil, err
	}
	return c, nil
}
