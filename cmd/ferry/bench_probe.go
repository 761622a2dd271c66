package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"
)

// machineProbe is how fast the machine was right before a scenario: the
// latency of a random memory read (a chain of dependent reads through 64
// MiB, more than the caches hold, each to a cache line and mostly a page
// not read for a while: what an index lookup or a filter probe waits for)
// and the time a simple loop takes per byte (the cores' own speed). On
// this project's development VM the first moved between 92 and 369 ns
// over ten bench runs, up to threefold within one, with nothing else
// running, while the second held at 1.10-1.20 ns a byte, and the
// CPU time of an unchanged re-sync follows the first (docs/performance.md,
// "Reading a slow figure"): the probe tells a slower machine from a
// slower Ferry.
type machineProbe struct {
	MemoryNs         float64 `json:"memory_read_ns"`
	ComputeNsPerByte float64 `json:"compute_ns_per_byte"`
}

// prober holds the probe's chain of reads, built once per bench run.
type prober struct {
	next []uint32 // the chain: next[slot] is the following slot
	at   uint32   // where the last probe stopped: the next goes on from there
	buf  []byte
	sink uint64
}

// probeWords is the chain's array: 64 MiB of uint32.
const probeWords = 16 << 20

// probeRegion: the chain has one slot in every region of this many words
// (64 bytes, a cache line), at a random place in it.
const probeRegion = 16

// newProber builds a chain through an array of words (probeWords in a
// bench run): one slot at a random place in each cache line, the lines in
// random order, as one cycle (Sattolo's algorithm), so that every read
// depends on the one before and neither the caches nor the prefetcher
// can guess it. A probe goes on where the one before stopped, so its
// reads are of lines not read since the chain last came round (a million
// reads in a bench run; a scenario runs between two probes).
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
	return &prober{next: next, at: first, buf: buf}
}

// probe measures the machine three times and keeps the median of each
// figure (~30 ms).
func (p *prober) probe() machineProbe {
	const reads, passes = 50_000, 20
	var mem, comp [3]float64
	for k := range mem {
		t0 := time.Now()
		i := p.at
		for range reads {
			i = p.next[i]
		}
		t1 := time.Now()
		p.at = i
		h := uint64(14695981039346656037)
		for range passes {
			for _, b := range p.buf {
				h ^= uint64(b)
				h *= 1099511628211
			}
		}
		t2 := time.Now()
		p.sink += h // keeps the loop's result alive
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
	return a + "–" + b
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
