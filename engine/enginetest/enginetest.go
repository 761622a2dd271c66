// Package enginetest holds the test helpers that build an engine from
// config text: write the config to a directory, load and compile it, and
// open a bbolt store that is closed when the test ends. OpenStore and
// NewEngine open a NATS store on an embedded server instead when
// FERRY_TEST_STORE=nats, so a package's tests can run on both stores.
package enginetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/natsstore"
	"github.com/ferrydata/ferry/engine/natsstore/natstest"
)

// NoEnv resolves no $ENV names.
func NoEnv(string) (string, bool) { return "", false }

// Config writes text to dir/pipes.json and loads it.
func Config(t testing.TB, dir, text string) *engine.Config {
	t.Helper()
	path := filepath.Join(dir, "pipes.json")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadConfig([]string{path}, NoEnv)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return cfg
}

// Plan loads text (see Config) and compiles it with reg.
func Plan(t testing.TB, reg *engine.Registry, dir, text string) *engine.Plan {
	t.Helper()
	plan, err := engine.Compile(Config(t, dir, text), reg, nil)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return plan
}

// Store opens a store in dir without fsync (tests need no durability
// against power loss) and closes it at the end of the test.
func Store(t testing.TB, dir string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Engine compiles text with reg (config in dir) and returns an engine on a
// store in dir/data.
func Engine(t testing.TB, reg *engine.Registry, dir, text string) (*engine.Engine, *boltstore.Store) {
	t.Helper()
	plan := Plan(t, reg, dir, text)
	s := Store(t, filepath.Join(dir, "data"))
	return engine.New(s, plan, nil), s
}

// StoreEnv names the environment variable that picks the store of
// OpenStore and NewEngine: "nats" for a NATS store on an embedded server,
// anything else for bbolt.
const StoreEnv = "FERRY_TEST_STORE"

// OnNATS reports whether the tests run on the NATS store.
func OnNATS() bool { return os.Getenv(StoreEnv) == "nats" }

var prefixes atomic.Int64

// OpenStore opens an empty store for a test, closed when it ends: bbolt
// in dir, or with FERRY_TEST_STORE=nats a NATS store on a JetStream server
// started in the test process.
func OpenStore(t testing.TB, dir string) engine.Store {
	t.Helper()
	if !OnNATS() {
		return Store(t, dir)
	}
	srv := natstest.Start(t, dir)
	return natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: fmt.Sprintf("t%d", prefixes.Add(1))})
}

// NewEngine is Engine on OpenStore's store; on NATS the engine takes
// leases (Engine.Cluster) as workers do.
func NewEngine(t testing.TB, reg *engine.Registry, dir, text string) (*engine.Engine, engine.Store) {
	t.Helper()
	plan := Plan(t, reg, dir, text)
	s := OpenStore(t, filepath.Join(dir, "data"))
	e := engine.New(s, plan, nil)
	if ns, ok := s.(*natsstore.Store); ok {
		c, err := ns.Cluster()
		if err != nil {
			t.Fatal(err)
		}
		e.Cluster = c
	}
	return e, s
}

// RerunOnNATS runs the calling test binary's tests again with
// FERRY_TEST_STORE=nats and fails t with their output if they fail. Call
// it from one test of a package whose tests use OpenStore or NewEngine;
// it skips itself in the NATS run and with -short.
func RerunOnNATS(t *testing.T) {
	t.Helper()
	if OnNATS() {
		t.Skip("this is the NATS run")
	}
	if testing.Short() {
		t.Skip("-short: the tests run on bbolt only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=.", "-test.count=1")
	cmd.Env = append(os.Environ(), StoreEnv+"=nats")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests fail on the NATS store: %v\n%s", err, out)
	}
}
