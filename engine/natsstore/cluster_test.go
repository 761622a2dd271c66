package natsstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/natsstore"
	"github.com/ferrydata/ferry/engine/natsstore/natstest"
	"github.com/ferrydata/ferry/engine/storetest"
)

// TestClusteredR3 runs the store on three clustered servers with every
// stream replicated three times, kills one server (the one the store is
// connected to) in the middle and checks that commits go on on the other
// two and nothing committed is lost.
func TestClusteredR3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster")
	}
	ctx := context.Background()
	servers := natstest.Cluster(t, t.TempDir(), 3)
	s := natstest.Store(t, natstest.URLs(servers), natsstore.Options{Prefix: "r3", Replicas: 3, Timeout: 5 * time.Second})
	write := func(round int) error {
		tx, err := s.Begin(ctx)
		if err != nil {
			return err
		}
		for i := range 200 {
			p := storetest.Prep(t, fmt.Sprintf(`{"_id":"e%d","round":%d}`, i, round))
			if _, _, err := tx.Put("ds", &p, int64(round)); err != nil {
				tx.Rollback()
				return err
			}
		}
		tx.SetPipeState("p", engine.PipeState{Since: fmt.Sprint(round)})
		return tx.Commit()
	}
	committed := 0
	for round := range 5 {
		if err := write(round); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		committed++
	}
	// Kill the server this store talks to.
	url := s.Conn().ConnectedUrl()
	for _, srv := range servers {
		if srv.ClientURL() == url {
			srv.Shutdown()
			t.Logf("killed %s", srv.Name())
		}
	}
	// Commits may fail while the streams elect new leaders; each fails
	// whole. Keep going until ten more have landed.
	deadline := time.Now().Add(60 * time.Second)
	failures := 0
	for round := 5; committed < 15; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d commits landed after the kill (%d failed)", committed-5, failures)
		}
		if err := write(round); err != nil {
			failures++
			time.Sleep(200 * time.Millisecond)
			continue
		}
		committed++
		// Reads may be answered by a follower a moment behind.
		for wait := 0; ; wait++ {
			st, _ := s.PipeState(ctx, "p")
			if st.Since == fmt.Sprint(round) {
				break
			}
			if wait == 100 {
				t.Fatalf("pipe state %q 2 s after committing round %d", st.Since, round)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("%d commits failed while the cluster recovered", failures)
	info, ok, err := s.Dataset(ctx, "ds")
	if err != nil || !ok || info.Entities != 200 || info.Versions != 200*uint64(committed) {
		t.Errorf("after the kill: %+v %v %v; want 200 entities in %d versions", info, ok, err, 200*committed)
	}
	if err := s.Check(ctx); err != nil {
		t.Error(err)
	}
}
