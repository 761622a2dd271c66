package natsstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/natsstore"
	"github.com/ferrydata/ferry/engine/natsstore/natstest"
	"github.com/ferrydata/ferry/engine/storetest"
)

var prefixes atomic.Int64

// newPrefix gives each store of a test its own names on a shared server.
func newPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

func TestContract(t *testing.T) {
	srv := natstest.Start(t, t.TempDir())
	storetest.Run(t, func(t *testing.T) engine.Store {
		return natstest.Store(t, srv.ClientURL(), natsstore.Options{Prefix: newPrefix()})
	})
}
