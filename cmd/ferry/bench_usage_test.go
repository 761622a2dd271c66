package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/internal/cputime"
)

// TestBenchUsageSeesOtherProcess keeps a busy process of its own running
// (not waited for: it is not the scenario's) while it measures, and
// checks that the usage counts its CPU time as other processes'.
func TestBenchUsageSeesOtherProcess(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	usage := startUsage()
	cmd := exec.Command(sh, "-c", `while :; do :; done`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var used time.Duration
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if used, err = cputime.OfProcess(cmd.Process.Pid); err != nil {
			t.Skipf("reading the child's CPU time: %v", err)
		}
		if used >= 300*time.Millisecond {
			break
		}
	}
	u := usage()
	if used < 300*time.Millisecond {
		t.Skipf("the busy child got only %v of CPU in 20 s", used)
	}
	// /proc counts in steps of 10 ms; allow a few.
	if u.OthersUserSeconds < (used - 50*time.Millisecond).Seconds() {
		t.Errorf("others' user time %.2fs; the busy child alone used %v: %+v", u.OthersUserSeconds, used, u)
	}
	if u.Cores <= 0 || u.Seconds <= 0 || u.othersShare() <= 0 {
		t.Errorf("usage %+v, others' share %.2f", u, u.othersShare())
	}
}

// TestBenchBusyMachineReported: the table names the scenarios during which
// other processes took a tenth of the cores or more, and a regression
// measured then says so beside its status (it still fails).
func TestBenchBusyMachineReported(t *testing.T) {
	results := map[string]*benchResult{
		"initial":   {Entities: 100, EntitiesPerS: 50, IDs: "hash", Usage: &benchUsage{Seconds: 2, Cores: 2, OthersUserSeconds: 1.4}},
		"unchanged": {Entities: 100, EntitiesPerS: 500, IDs: "hash", Usage: &benchUsage{Seconds: 1, Cores: 2, OthersUserSeconds: 0.1}},
		"jq":        {Entities: 100, EntitiesPerS: 100, IDs: "hash"}, // a result from before usage was recorded
	}
	run := []string{"initial", "unchanged", "jq"}
	var b bytes.Buffer
	printBusyMachine(&b, run, results)
	if got := b.String(); !strings.Contains(got, "during: initial 35%;") || strings.Contains(got, "unchanged") || strings.Contains(got, "jq") {
		t.Errorf("busy machine line: %q", got)
	}
	b.Reset()
	printBusyMachine(&b, []string{"unchanged", "jq"}, results)
	if b.Len() != 0 {
		t.Errorf("a quiet machine printed %q", b.String())
	}
	baseline := map[string]*benchResult{
		"initial": {Entities: 100, EntitiesPerS: 100}, "unchanged": {Entities: 100, EntitiesPerS: 1000}, "jq": {Entities: 100, EntitiesPerS: 100},
	}
	cmp := compareBench(run, baseline, results, "throughput", 10)
	b.Reset()
	printBenchCompare(&b, cmp, benchOptions{tolerance: 10, metric: "throughput", compare: "base.json"})
	out := b.String()
	if !strings.Contains(out, "REGRESSION (more than 10% slower; other processes used 35% of the cores meanwhile)") ||
		!strings.Contains(out, "2 scenario(s) regressed") {
		t.Errorf("compare output:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "unchanged") && strings.Contains(line, "other processes") {
			t.Errorf("unchanged ran on a quiet machine: %q", line)
		}
	}
}
