// Package enginetest holds the test helpers that build an engine from
// config text: write the config to a directory, load and compile it, and
// open a bbolt store that is closed when the test ends.
package enginetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
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
