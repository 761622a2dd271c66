package main

import (
	"context"
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
func (c *cli) isNATS() bool {
	return strings.HasPrefix(c.g.store, "nats://") || strings.HasPrefix(c.g.store, "tls://")
}

// dataDir is the directory of the bbolt store: --store when it names a
// directory, else --data.
func (c *cli) dataDir() string {
	if c.g.store != "" && c.g.store != "bolt" && !c.isNATS() {
		return c.g.store
	}
	return c.g.data
}

// openStore opens the store --store names: the bbolt file in --data (the
// default; a --store value that is a directory means that directory) or a
// NATS JetStream server. readOnly and noSync apply to bbolt only; a
// read-only open of a missing bbolt store is a usage error (nothing to
// inspect).
func (c *cli) openStore(readOnly, noSync bool) (engine.Store, error) {
	if c.isNATS() {
		opts, err := natsstore.ParseURL(c.g.store)
		if err != nil {
			return nil, usagef("--store: %v", err)
		}
		opts.Logger = c.logger()
		host, _ := os.Hostname()
		opts.Name = "ferry " + host
		s, err := natsstore.Open(context.Background(), opts)
		if err != nil {
			return nil, failf("%v", err)
		}
		return s, nil
	}
	data := c.dataDir()
	if readOnly && !c.storeExists() {
		return nil, usagef("no store in %s (run a config first, or pass --data DIR)", data)
	}
	s, err := boltstore.Open(data, boltstore.Options{ReadOnly: readOnly, MaxResident: int64(c.g.maxRSSMiB) << 20, NoSync: noSync, Pressure: gcPressure()})
	if err != nil {
		return nil, usagef("%v", err)
	}
	return s, nil
}

// storeExists reports whether there is a store to read (a NATS server
// always counts).
func (c *cli) storeExists() bool {
	if c.isNATS() {
		return true
	}
	_, err := os.Stat(filepath.Join(c.dataDir(), boltstore.FileName))
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
