package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestProberChainIsOneCycle: the chain of reads visits one slot in every
// cache line of the array before it comes back, so no read is answered
// from a short loop in the cache, and a probe goes on where the last
// stopped.
func TestProberChainIsOneCycle(t *testing.T) {
	const words = 1 << 16
	regions := words / probeRegion
	p := newProber(words)
	seen := make([]bool, regions)
	start := p.at
	i := start
	for k := 0; k < regions; k++ {
		if seen[i/probeRegion] {
			t.Fatalf("region %d visited twice after %d reads", i/probeRegion, k)
		}
		seen[i/probeRegion] = true
		i = p.next[i]
	}
	if i != start {
		t.Fatalf("after %d reads the chain is at %d, not back at its start %d", regions, i, start)
	}
	m := p.probe()
	if m.MemoryNs <= 0 || m.ComputeNsPerByte <= 0 {
		t.Errorf("probe: %+v", m)
	}
	// Three passes of 50,000 reads: 150,000 steps along the cycle.
	want := start
	for range 150_000 {
		want = p.next[want]
	}
	if p.at != want {
		t.Errorf("after a probe the chain is at %d, want %d (150,000 reads on)", p.at, want)
	}
}

// TestMachineProbeReported: the table gives the probes' range, and
// --compare the memory's speed against the baseline's beside each ratio.
func TestMachineProbeReported(t *testing.T) {
	results := map[string]*benchResult{
		"initial":   {Entities: 100, EntitiesPerS: 80, IDs: "hash", Machine: &machineProbe{MemoryNs: 200, ComputeNsPerByte: 1.1}},
		"unchanged": {Entities: 100, EntitiesPerS: 1000, IDs: "hash", Machine: &machineProbe{MemoryNs: 160, ComputeNsPerByte: 1.1}},
		"jq":        {Entities: 100, EntitiesPerS: 100, IDs: "hash"},
	}
	run := []string{"initial", "unchanged", "jq"}
	var b bytes.Buffer
	printMachineProbes(&b, run, results)
	if got := b.String(); !strings.Contains(got, "a random memory read 160–200 ns, a simple loop 1.10 ns per byte") {
		t.Errorf("probe line: %q", got)
	}
	baseline := map[string]*benchResult{
		"initial":   {Entities: 100, EntitiesPerS: 100, IDs: "hash", Machine: &machineProbe{MemoryNs: 160}},
		"unchanged": {Entities: 100, EntitiesPerS: 1000, IDs: "hash"}, // before probes
		"jq":        {Entities: 100, EntitiesPerS: 100, IDs: "hash"},
	}
	cmp := compareBench(run, baseline, results, "throughput", 10)
	if cmp[0].Machine != 0.8 || cmp[1].Machine != 0 || cmp[2].Machine != 0 {
		t.Errorf("machine ratios %v %v %v, want 0.8 0 0", cmp[0].Machine, cmp[1].Machine, cmp[2].Machine)
	}
	b.Reset()
	printBenchCompare(&b, cmp, benchOptions{tolerance: 10, metric: "throughput", compare: "base.json"})
	out := b.String()
	if !strings.Contains(out, "MACHINE") || !strings.Contains(out, "0.80") || !strings.Contains(out, "not applied to RATIO") {
		t.Errorf("compare output:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "initial") && !strings.Contains(line, "REGRESSION") {
			t.Errorf("a slower machine must not hide a regression: %q", line)
		}
	}
}
