package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/natsstore"
	"github.com/ferrydata/ferry/engine/natsstore/natstest"
)

// chaosSize is the shape of a chaos test run.
type chaosSize struct {
	sources  int           // collect pipes; each has a downstream pipe too
	entities int           // per source file
	chaos    time.Duration // of killing and stalling per phase
}

// TestChaosWorkers runs `ferry serve` as three worker processes on one
// NATS server (embedded in the test) over 24 pipes, and meanwhile kills
// workers with SIGKILL and stalls one with SIGSTOP past its lease TTL, at
// random points, restarting the killed ones. Halfway the source files
// change (10% of the entities changed, 5% removed). After each phase,
// once the workers have caught up, every dataset must equal what a
// single `ferry run` on bbolt makes of the same files: the same latest
// entities, the same number of versions (none lost, none duplicated),
// offsets without gaps. FERRY_CHAOS_LONG=1 runs a longer variant.
func TestChaosWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes and a NATS server; kills workers for ~20 s")
	}
	size := chaosSize{sources: 12, entities: 1000, chaos: 6 * time.Second}
	// The workers are this test binary, or under the race detector (where
	// four instrumented processes fill two cores and catching up takes
	// minutes) a plain build of the command.
	bin := os.Args[0]
	if raceEnabled {
		bin = buildPlainFerry(t)
	}
	if os.Getenv("FERRY_CHAOS_LONG") != "" {
		size = chaosSize{sources: 30, entities: 6000, chaos: 60 * time.Second}
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))

	// Sources (version 1 of each file) and the config.
	var cfg []string
	for i := range size.sources {
		writeChaosSource(t, dir, i, size.entities, 1)
		cfg = append(cfg,
			fmt.Sprintf(`{"_id":"c%02d","type":"pipe","batch_size":50,"checkpoint_interval":2,"pump":{"schedule_interval":1},
				"source":{"type":"json","url":"src%02d.ndjson"}}`, i, i),
			fmt.Sprintf(`{"_id":"d%02d","type":"pipe","batch_size":70,"checkpoint_interval":1,"pump":{"schedule_interval":1},
				"source":{"type":"dataset","dataset":"c%02d"},
				"transform":{"type":"jq","expression":". + {k: (.n * 2), src: $pipe}"}}`, i, i))
	}
	cfgPath := filepath.Join(dir, "config.json")
	os.WriteFile(cfgPath, []byte("["+strings.Join(cfg, ",\n")+"]"), 0o644)

	srv := natstest.Start(t, filepath.Join(dir, "nats"))
	storeURL := srv.ClientURL() + "?prefix=chaos&lease_ttl=3s&tail_wait=10s"
	check := natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: "chaos"})

	workers := make([]*chaosWorker, 3)
	for i := range workers {
		workers[i] = &chaosWorker{t: t, id: i, dir: dir, cfg: cfgPath, url: storeURL, bin: bin}
		workers[i].start()
	}
	t.Cleanup(func() {
		for _, w := range workers {
			w.stop(syscall.SIGKILL)
		}
	})

	refDir := filepath.Join(dir, "ref")
	for phase := 1; phase <= 2; phase++ {
		if phase == 2 {
			for i := range size.sources {
				if i%2 == 0 {
					writeChaosSource(t, dir, i, size.entities, 2)
				}
			}
		}
		if code, _, stderr := runCLI(t, "run", cfgPath, "--data", refDir); code != 0 {
			t.Fatalf("reference run on bbolt: %s", stderr)
		}
		want := readBolt(t, refDir)
		kills, stalls := chaos(t, rng, workers, size.chaos)
		start := time.Now()
		waitConverged(t, check, want, 60*time.Second)
		t.Logf("phase %d: %d kills, %d stalls past the lease TTL; caught up %v after the chaos", phase, kills, stalls, time.Since(start).Round(time.Millisecond))
		compareStores(t, check, want)
		if t.Failed() {
			for _, w := range workers {
				t.Logf("worker %d log:\n%s", w.id, w.logTail())
			}
			return
		}
	}
	if err := check.Check(context.Background()); err != nil {
		t.Error(err)
	}
}

// writeChaosSource writes src<i>.ndjson atomically (rename), so a run
// reads one version of the file or the other. Version 2 changes every
// tenth entity and leaves out every twentieth.
func writeChaosSource(t *testing.T, dir string, i, n, version int) {
	var b bytes.Buffer
	for j := range n {
		if version == 2 && j%20 == 7 {
			continue
		}
		v := 1
		if version == 2 && j%10 == 3 {
			v = 2
		}
		fmt.Fprintf(&b, `{"_id":"s%d-%05d","n":%d,"v":%d,"name":"entity %d of source %d"}`+"\n", i, j, j, v, j, i)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".src%02d.tmp", i))
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("src%02d.ndjson", i))); err != nil {
		t.Fatal(err)
	}
}

// chaosWorker is one `ferry serve` process.
type chaosWorker struct {
	t        *testing.T
	id       int
	dir, cfg string
	url      string
	bin      string // the ferry executable
	cmd      *exec.Cmd
	log      *os.File
	starts   int
}

func (w *chaosWorker) start() {
	w.starts++
	data := filepath.Join(w.dir, fmt.Sprintf("worker%d", w.id))
	os.MkdirAll(data, 0o755)
	if w.log == nil {
		f, err := os.Create(filepath.Join(w.dir, fmt.Sprintf("worker%d.log", w.id)))
		if err != nil {
			w.t.Fatal(err)
		}
		w.log = f
	}
	fmt.Fprintf(w.log, "--- start %d\n", w.starts)
	w.cmd = exec.Command(w.bin, "serve", w.cfg, "--store", w.url, "--data", data, "--addr", "127.0.0.1:0")
	w.cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
}

func (w *chaosWorker) stop(sig syscall.Signal) {
	if w.cmd == nil {
		return
	}
	w.cmd.Process.Signal(syscall.SIGCONT)
	w.cmd.Process.Signal(sig)
	w.cmd.Wait()
	w.cmd = nil
}

func (w *chaosWorker) logTail() string {
	b, _ := os.ReadFile(w.log.Name())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// chaos kills a random worker (SIGKILL) every 0.3 to 1.5 s and restarts
// it after up to half a second; now and then it stalls one (SIGSTOP) for
// 3 s, longer than the lease TTL, and lets it continue.
func chaos(t *testing.T, rng *rand.Rand, workers []*chaosWorker, d time.Duration) (kills, stalls int) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		w := workers[rng.IntN(len(workers))]
		if rng.IntN(5) == 0 {
			w.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(3 * time.Second)
			w.cmd.Process.Signal(syscall.SIGCONT)
			stalls++
			continue
		}
		w.stop(syscall.SIGKILL)
		kills++
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		w.start()
	}
	return kills, stalls
}

// dsState is a dataset's latest entities and counts.
type dsState struct {
	info   engine.DatasetInfo
	latest map[string]string // _id -> body
}

func readAll(t *testing.T, s engine.Store) map[string]dsState {
	t.Helper()
	ctx := context.Background()
	infos, err := s.Datasets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dsState{}
	for _, in := range infos {
		st := dsState{info: in, latest: map[string]string{}}
		_, err := s.Scan(ctx, in.Name, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
			st.latest[r.ID] = string(r.Body)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		out[in.Name] = st
	}
	return out
}

func readBolt(t *testing.T, dir string) map[string]dsState {
	s, err := boltstore.Open(dir, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return readAll(t, s)
}

// waitConverged waits until every dataset has the counts of want.
func waitConverged(t *testing.T, s engine.Store, want map[string]dsState, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		infos, err := s.Datasets(context.Background())
		diff := ""
		if err != nil {
			diff = err.Error()
		} else {
			have := map[string]engine.DatasetInfo{}
			for _, in := range infos {
				have[in.Name] = in
			}
			for name, w := range want {
				h := have[name]
				if h.Versions != w.info.Versions || h.Entities != w.info.Entities || h.Deleted != w.info.Deleted {
					diff = fmt.Sprintf("%s: %d versions, %d entities, %d deleted; want %d, %d, %d", name,
						h.Versions, h.Entities, h.Deleted, w.info.Versions, w.info.Entities, w.info.Deleted)
					break
				}
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the workers did not converge within %s: %s", limit, diff)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// compareStores compares every dataset of want with the NATS store's.
func compareStores(t *testing.T, s engine.Store, want map[string]dsState) {
	t.Helper()
	have := readAll(t, s)
	for name, w := range want {
		h, ok := have[name]
		if !ok {
			t.Errorf("dataset %s is missing", name)
			continue
		}
		if h.info.Versions != w.info.Versions || h.info.LastOffset != w.info.LastOffset {
			t.Errorf("%s: %d versions (last offset %d), want %d (%d)", name, h.info.Versions, h.info.LastOffset, w.info.Versions, w.info.LastOffset)
		}
		bad := 0
		for id, body := range w.latest {
			if h.latest[id] != body && bad < 3 {
				t.Errorf("%s: %s = %s, want %s", name, id, h.latest[id], body)
				bad++
			}
		}
		if len(h.latest) != len(w.latest) {
			t.Errorf("%s: %d latest entities, want %d", name, len(h.latest), len(w.latest))
		}
	}
	if len(have) != len(want) {
		t.Errorf("%d datasets, want %d", len(have), len(want))
	}
}

// buildPlainFerry builds the ferry command without the race detector into
// a temporary directory and returns its path.
func buildPlainFerry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ferry")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ferry for the workers: %v\n%s", err, out)
	}
	return bin
}
