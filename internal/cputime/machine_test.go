//go:build linux

package cputime

import (
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	for _, tc := range []struct {
		in   string
		want MachineDelta
		bad  bool
	}{
		{in: "cpu  100 2 30 400 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n", want: MachineDelta{User: ms(1020), Kernel: ms(430), Steal: ms(80), Idle: ms(4500)}},
		{in: "cpu  100 0 0 200 0 0 0\n", want: MachineDelta{User: time.Second, Idle: 2 * time.Second}}, // before steal was counted
		{in: "cpu0 1 2 3 4 5 6 7 8\n", bad: true},
		{in: "cpu  1 2 x 4 5 6 7 8\n", bad: true},
		{in: "cpu  1 2 -3 4 5 6 7 8\n", bad: true},
		{in: "cpu  1 2 3 4 5 6 7 9223372036854775807\n", bad: true},
		{in: "cpu 1 2\n", bad: true},
		{in: "", bad: true},
	} {
		got, err := parseStat([]byte(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("parseStat(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if d := got.Since(MachineTimes{}); err != nil || d != tc.want {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v", tc.in, d, err, tc.want)
		}
	}
}

// TestMachineCountsSelf burns CPU and checks that the machine's user time
// grew by at least most of what this process used.
func TestMachineCountsSelf(t *testing.T) {
	m0, err := Machine()
	if err != nil {
		t.Fatal(err)
	}
	u0 := Self()
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
	}
	m1, err := Machine()
	if err != nil {
		t.Fatal(err)
	}
	own := Self().Sub(u0)
	if own.User < 200*time.Millisecond {
		t.Fatalf("Self: %v user time after 300 ms of spinning", own.User)
	}
	if d := m1.Since(m0); d.User < own.User-50*time.Millisecond {
		t.Errorf("machine user time %v, less than this process's own %v", d.User, own.User)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("cpu  100 2 30 400 50 6 7 8 0 0\n"))
	f.Add([]byte("cpu  1 2 3 4 5 6 7\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseStat(b)
		if err != nil {
			return
		}
		// What parses adds up without overflowing.
		if got.user < 0 || got.kernel < 0 || got.steal < 0 || got.idle < 0 {
			t.Fatalf("parseStat(%q) = %+v", b, got)
		}
	})
}

// TestSelfCountsWaitedChildren runs a busy child process and checks that
// Self counts its CPU time once it has been waited for.
func TestSelfCountsWaitedChildren(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	u0 := Self()
	cmd := exec.Command(sh, "-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if child < 50*time.Millisecond {
		t.Skipf("the child used only %v", child)
	}
	d := Self().Sub(u0)
	if got := d.User + d.System; got < child {
		t.Errorf("Self grew by %v, the child alone used %v", got, child)
	}
}
