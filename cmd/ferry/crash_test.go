package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
)

// TestMain lets a test start this binary as the ferry command (see
// TestKilledRunLosesNothing): with FERRY_TEST_AS_CLI=1 it runs the CLI on
// its arguments instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("FERRY_TEST_AS_CLI") == "1" {
		os.Exit(newCLI(os.Stdout, os.Stderr).run(context.Background(), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestKilledRunLosesNothing kills `ferry run` with SIGKILL in the middle of
// a load and checks what a crash may leave: whole transactions only (each
// 1,000 entities with the pipe's offset), a store whose index, log and
// metadata agree, and a rerun that completes the dataset without writing
// any entity twice. The load is large enough for the two-level _id index
// to move entries between its levels.
func TestKilledRunLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess and loads 150,000 entities")
	}
	dir := t.TempDir()
	const n = 150_000
	src := filepath.Join(dir, "people.ndjson")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range n {
		fmt.Fprintf(f, `{"_id":"%016x","name":"Person %d","address":{"city":"Oslo","zip":"%04d"},"tags":["a","b"],"score":%d.%02d}`+"\n",
			rng.Uint64(), i, i%10000, i, i%100)
	}
	f.Close()
	cfg := filepath.Join(dir, "config.json")
	os.WriteFile(cfg, []byte(`[{"_id":"load","type":"pipe","batch_size":100,"checkpoint_interval":10,
		"source":{"type":"json","url":"people.ndjson"},"sink":{"type":"dataset","dataset":"people"}}]`), 0o644)
	data := filepath.Join(dir, "data")

	cmd := exec.Command(os.Args[0], "run", cfg, "--data", data)
	cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once enough transactions have landed for entries to have
	// moved between the index levels (more than 4,096 ids): the file
	// grows in 16 MiB steps as bbolt allocates, the second step comes
	// after ~20,000 entities.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if st, err := os.Stat(filepath.Join(data, boltstore.FileName)); err == nil && st.Size() >= 32<<20 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the run did not get going")
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	err = cmd.Wait()
	if err == nil {
		t.Skip("the run finished before it could be killed")
	}

	ctx := context.Background()
	check := func(when string) (entities, versions uint64) {
		t.Helper()
		s, err := boltstore.Open(data, boltstore.Options{})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer s.Close()
		if err := s.Check(ctx); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		info, ok, err := s.Dataset(ctx, "people")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if !ok {
			return 0, 0
		}
		return info.Entities, info.Versions
	}
	entities, versions := check("after the kill")
	t.Logf("killed with %d of %d entities committed", entities, n)
	// Transactions hold up to checkpoint_interval batches of 100 (fewer
	// when a group's time limit commits early on a loaded machine), so
	// what landed is whole batches.
	if entities != versions || entities%engine.DefaultBatchSize != 0 || entities == 0 || entities >= n {
		t.Fatalf("after the kill: %d entities in %d versions; want whole batches of %d, each entity once, some but not all", entities, versions, engine.DefaultBatchSize)
	}

	if code, _, stderr := runCLI(t, "run", cfg, "--data", data); code != 0 {
		t.Fatalf("rerun: exit %d: %s", code, stderr)
	}
	if entities, versions := check("after the rerun"); entities != n || versions != n {
		t.Fatalf("after the rerun: %d entities in %d versions, want %d in %d", entities, versions, n, n)
	}
}
