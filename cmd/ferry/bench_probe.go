package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// machineProbe is how fast the machine was right before a scenario: the
// latency of a random memory read (a chain of dependent reads over 64
// MiB, far more than the caches hold: what an index lookup or a filter
// probe waits for) and the time a simple loop takes per byte (the
// cores' own speed). On this project's development VM the first swings
// by 10–20% within minutes while the second holds, and the CPU time of
// an unchanged re-sync follows the first (docs/performance.md, "Reading
// a slow figure"): the probe tells a slower machine from a slower Ferry.
type machineProbe struct {
	MemoryNs         float64 `json:"memory_read_ns"`
	ComputeNsPerByte float64 `json:"compute_ns_per_byte"`
}

// prober holds the probe's chain of reads, built once per bench run.
type prober struct {
	next  []uint32 // the chain: next[slot] is the following slot
	start uint32
	buf   []byte
	sink  uint64
}

// probeWords is the chain's array: 64 MiB of uint32.
const probeWords = 16 << 20

// probeRegion: the chain has one slot in every region of this many words
// (256 bytes, four cache lines), at a random place in it.
const probeRegion = 64

// newProber builds a chain through an array of words (probeWords in a
// bench run): one slot at a random place in each region, the regions in
// random order, as one cycle (Sattolo's algorithm), so that every read
// depends on the one before and neither the caches nor the prefetcher
// can guess it. Shuffling regions rather than words keeps the build
// cheap (a 64th of the array).
func newProber(words int) *prober {
	regions := max(words/probeRegion, 2)
	r := rand.New(rand.NewPCG(1, 2))
	order := make([]uint32, regions)
	for i := range order {
		order[i] = uint32(i)
	}
	for i := len(order) - 1; i > 0; i-- {
		j := r.IntN(i)
		order[i], order[j] = order[j], order[i]
	}
	slot := func(region uint32) uint32 { return region*probeRegion + uint32(r.IntN(probeRegion)) }
	next := make([]uint32, regions*probeRegion)
	first := slot(order[0])
	prev := first
	for _, reg := range order[1:] {
		s := slot(reg)
		next[prev] = s
		prev = s
	}
	next[prev] = first
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	return &prober{next: next, start: first, buf: buf}
}

// probe measures the machine three times and keeps the median of each
// figure (~30 ms).
func (p *prober) probe() machineProbe {
	const reads, passes = 50_000, 20
	var mem, comp [3]float64
	for k := range mem {
		t0 := time.Now()
		i := p.start
		for range reads {
			i = p.next[i]
		}
		t1 := time.Now()
		h := uint64(14695981039346656037)
		for range passes {
			for _, b := range p.buf {
				h ^= uint64(b)
				h *= 1099511628211
			}
		}
		t2 := time.Now()
		p.sink += uint64(i) ^ h // keeps the loops' results alive
		mem[k] = float64(t1.Sub(t0).Nanoseconds()) / reads
		comp[k] = float64(t2.Sub(t1).Nanoseconds()) / float64(passes*len(p.buf))
	}
	slices.Sort(mem[:])
	slices.Sort(comp[:])
	return machineProbe{MemoryNs: mem[1], ComputeNsPerByte: comp[1]}
}

// printMachineProbes says, under the table, how fast the machine was
// over the run: the range of the probes taken before the scenarios.
func printMachineProbes(w io.Writer, run []string, results map[string]*benchResult) {
	var mem, comp []float64
	for _, sc := range run {
		if r := results[sc]; r != nil && r.Machine != nil {
			mem, comp = append(mem, r.Machine.MemoryNs), append(comp, r.Machine.ComputeNsPerByte)
		}
	}
	if len(mem) == 0 {
		return
	}
	fmt.Fprintf(w, "machine, probed before each scenario: a random memory read %s ns, a simple loop %s ns per byte (--json: machine_probe).\n",
		spread(mem, "%.0f"), spread(comp, "%.2f"))
}

// spread formats the range of vs ("170" or "155–182").
func spread(vs []float64, format string) string {
	lo, hi := slices.Min(vs), slices.Max(vs)
	a, b := fmt.Sprintf(format, lo), fmt.Sprintf(format, hi)
	if a == b {
		return a
	}
	return strings.Join([]string{a, b}, "–")
}

// machineRatio is how fast the machine's memory was for the current
// scenario relative to the baseline's (> 1: faster now), or 0 when
// either lacks a probe.
func machineRatio(base, cur *benchResult) float64 {
	if base == nil || cur == nil || base.Machine == nil || cur.Machine == nil || cur.Machine.MemoryNs <= 0 {
		return 0
	}
	return base.Machine.MemoryNs / cur.Machine.MemoryNs
}
