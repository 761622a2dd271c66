//go:build linux

package cputime

import (
	"os"
	"testing"
	"time"
)

// TestOfProcessSelf burns CPU and checks that /proc agrees with getrusage.
func TestOfProcessSelf(t *testing.T) {
	x := 0
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		x++
	}
	got, err := OfProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := Now()
	if got < 200*time.Millisecond || got > want+20*time.Millisecond {
		t.Errorf("OfProcess(self) = %v, getrusage %v (after %d spins)", got, want, x)
	}
}
