package engine_test

import (
	"testing"

	"github.com/ferrydata/ferry/engine/enginetest"
)

// TestOnNATS runs this package's tests again on the NATS store (a
// JetStream server inside the test process per test, engines taking
// leases as workers do).
func TestOnNATS(t *testing.T) { enginetest.RerunOnNATS(t) }
