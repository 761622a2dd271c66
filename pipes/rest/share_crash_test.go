package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

// TestMain lets TestShareCrashNeverDuplicates start this test binary as a
// child that runs a share pipe: with FERRY_SHARE_CHILD=<config> it runs
// the transform and share pipes of that config on FERRY_SHARE_DATA and
// exits 0 when the share run completed (entity failures included), 1
// otherwise.
func TestMain(m *testing.M) {
	if cfg := os.Getenv("FERRY_SHARE_CHILD"); cfg != "" {
		os.Exit(shareChild(cfg, os.Getenv("FERRY_SHARE_DATA")))
	}
	os.Exit(m.Run())
}

func shareChild(cfgPath, data string) int {
	ctx := context.Background()
	cfg, err := engine.LoadConfig([]string{cfgPath}, engine.EnvFrom(nil))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	plan, err := engine.Compile(cfg, shareRegistry(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := boltstore.Open(data, boltstore.Options{}) // fsync on, as in production
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer s.Close()
	eng := engine.New(s, plan, nil)
	if _, err := eng.Run(ctx, "crm-customer-transform", engine.RunOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := eng.Run(ctx, "crm-customer-share", engine.RunOptions{}); err != nil && !errors.Is(err, engine.ErrShareFailures) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestShareCrashNeverDuplicates kills a child process running a share
// pipe with SIGKILL, many times, at random points: right after the fake
// CRM applied a write and before the child could read the answer (the
// worst moment: the request happened, its bookkeeping did not), and at
// random times. The pipe inserts 60 customers, updates 60 and deletes 10.
// After the kills and a run that completes, every insert exists exactly
// once in the CRM (with an idempotency key or a lookup for inserted
// records) or at most once (with neither: in-doubt inserts are held in
// the dead-letter dataset), every update and delete is applied, and the
// store is consistent.
func TestShareCrashNeverDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	for _, v := range []struct {
		name, props string
		exact       bool
	}{
		{"idempotency-key", `"idempotency_key_header": "Idempotency-Key"`, true},
		{"lookup-insert", `"operation_lookup_insert": "find-inserted"`, true},
		{"no-reconciliation", ``, false},
	} {
		t.Run(v.name, func(t *testing.T) { crashShare(t, v.props, v.exact, int64(len(v.name))) })
	}
}

func crashShare(t *testing.T, props string, exact bool, seed int64) {
	rng := rand.New(rand.NewPCG(uint64(seed), 99))
	api := fakeapi.New(fakeapi.Options{})
	var child atomic.Pointer[os.Process]
	var writes, killAt atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			api.Handler().ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		api.Handler().ServeHTTP(rec, r) // the write happens
		if n := writes.Add(1); n == killAt.Load() {
			if p := child.Load(); p != nil {
				p.Kill() // before the child sees the answer
			}
			time.Sleep(20 * time.Millisecond)
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	defer srv.Close()

	e := &shareEnv{t: t, api: api, srv: srv, dir: t.TempDir(), props: props, pump: `{"max_retries_per_entity": 1000}`, ops: shareOps}
	for i := 1; i <= 70; i++ {
		e.putCustomer(i, fmt.Sprintf("Customer %d", i))
	}
	data := filepath.Join(e.dir, "data")
	cfgPath := filepath.Join(e.dir, "share.json")
	var origins []map[string]any // every ERP entity so far (the upstream keeps them)
	kills := 0
	for round := 1; round <= 3; round++ {
		// The parent collects and sets the round's desired state while no
		// child runs (the store file is locked by its user).
		s, err := boltstore.Open(data, boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		e.store = s
		e.compile(nil)
		e.mustRun("crm-customer-collect")
		desired := e.desired(func(id string, ent map[string]any) map[string]any {
			if n, _ := strconv.Atoi(id); n > 70 {
				return ent // a record inserted by an earlier round
			} else if n%7 == round {
				ent["_deleted"] = true
			} else {
				ent["name"] = fmt.Sprintf("%s (round %d)", strings.Split(ent["name"].(string), " (round")[0], round)
			}
			return ent
		})
		for i := 1; i <= 40; i++ {
			origins = append(origins, newCustomer(fmt.Sprintf("erp:%d:%d", round, i), fmt.Sprintf("ERP %d/%d", round, i)))
		}
		desired = append(desired, origins...)
		s.Close()
		if err := os.WriteFile(cfgPath, []byte(e.config(desired)), 0o644); err != nil {
			t.Fatal(err)
		}
		for attempt := 0; ; attempt++ {
			if attempt > 80 {
				t.Fatalf("round %d: no run completed after %d attempts", round, attempt)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "FERRY_SHARE_CHILD="+cfgPath, "FERRY_SHARE_DATA="+data)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			writes.Store(0)
			// Every fifth attempt runs undisturbed, so that a slow machine
			// (the race detector) still completes the round.
			spare := attempt%5 == 4
			timed := !spare && rng.IntN(3) == 0
			killAt.Store(-1)
			if !timed && !spare {
				killAt.Store(int64(1 + rng.IntN(25)))
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			child.Store(cmd.Process)
			if timed {
				d := time.Duration(rng.IntN(120)) * time.Millisecond
				go func(p *os.Process) {
					time.Sleep(d)
					p.Kill()
				}(cmd.Process)
			}
			err := cmd.Wait()
			child.Store(nil)
			if err == nil {
				break
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				t.Fatalf("round %d: child failed on its own: %v\n%s", round, err, stderr.String())
			}
			kills++
		}
		checkCrashRound(t, e, data, round, origins, exact)
	}
	t.Logf("%d kills over 3 rounds", kills)
}

// checkCrashRound verifies the CRM and the store after a round's run
// completed.
func checkCrashRound(t *testing.T, e *shareEnv, data string, round int, origins []map[string]any, exact bool) {
	t.Helper()
	s, err := boltstore.Open(data, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.store = s
	byRef := map[string]int{}
	for _, r := range e.api.Records("customers") {
		if ref, ok := r["externalRef"].(string); ok {
			byRef[ref]++
			continue
		}
		id, _ := strconv.Atoi(string(r["id"].(json.Number)))
		if id%7 == round {
			t.Errorf("round %d: customer %d was not deleted", round, id)
		} else if !strings.HasSuffix(r["name"].(string), fmt.Sprintf("(round %d)", round)) {
			t.Errorf("round %d: customer %d = %v", round, id, r["name"])
		}
	}
	share := e.entities("crm-customer-share")
	held := e.entities("system:dead-letter:crm-customer-share")
	for _, o := range origins {
		ref := o["_id"].(string)
		switch n := byRef[ref]; {
		case n > 1:
			t.Errorf("round %d: %s inserted %d times", round, ref, n)
		case exact && n != 1:
			t.Errorf("round %d: %s inserted %d times, want once", round, ref, n)
		case n == 0 && held[ref] == nil:
			t.Errorf("round %d: %s neither inserted nor held", round, ref)
		case n == 1 && share[ref]["$generated_id"] == nil && held[ref] == nil:
			t.Errorf("round %d: %s inserted but its share record has no $generated_id: %v", round, ref, share[ref])
		}
	}
	if exact && len(held) != 0 {
		t.Errorf("round %d: dead letters with reconciliation: %v", round, held)
	}
	if !exact {
		t.Logf("round %d: %d inserts held in doubt", round, len(held))
	}
	if left, _ := s.ListKV(context.Background(), engine.ShareIntentNamespace("crm-customer-share")); len(left) != 0 {
		t.Errorf("round %d: intents left: %v", round, left)
	}
}
