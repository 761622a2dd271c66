package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/ferrydata/ferry/internal/cputime"
)

// benchUsage is what a scenario's process and the machine did while the
// scenario ran (its process from start to end, setup included): the
// figures that tell a slow run's causes apart. Ferry's own CPU time up
// with nothing else busy points at Ferry or at a slower machine (a
// hypervisor that does not report steal); other processes' time up means
// the cores were shared; idle time with Ferry's own flat means Ferry
// waited (the disk, a lock).
type benchUsage struct {
	Seconds float64 `json:"seconds"`
	Cores   int     `json:"cores"`
	// The scenario's process's CPU time (with the fake API's, a child it
	// waits for, in collect and recollect).
	UserSeconds   float64 `json:"user_cpu_seconds"`
	SystemSeconds float64 `json:"system_cpu_seconds"`
	// InvoluntarySwitches: the times the kernel took a core from one of
	// its threads that still had work.
	InvoluntarySwitches int64 `json:"involuntary_switches"`
	VoluntarySwitches   int64 `json:"voluntary_switches"`
	MajorFaults         int64 `json:"major_faults"`
	// The rest of the machine meanwhile, summed over the cores (Linux
	// only, steps of 10 ms): other processes' user-space time, the
	// kernel's time outside the process's system calls (writing dirty
	// pages back, interrupts, other processes' system calls), the time
	// the hypervisor reports it took, and the cores' idle time (iowait
	// included).
	OthersUserSeconds float64 `json:"others_user_cpu_seconds"`
	KernelSeconds     float64 `json:"kernel_cpu_seconds"`
	StealSeconds      float64 `json:"steal_seconds"`
	IdleSeconds       float64 `json:"idle_seconds"`
}

// othersShare is the part of the machine's capacity (cores × seconds)
// that other processes took while the scenario ran.
func (u *benchUsage) othersShare() float64 {
	if u == nil || u.Seconds <= 0 || u.Cores <= 0 {
		return 0
	}
	return u.OthersUserSeconds / (u.Seconds * float64(u.Cores))
}

// busyShare is the share of the machine other processes must take for
// bench to say so: under the table (printBusyMachine) and beside a
// regression (printBenchCompare).
const busyShare = 0.10

// startUsage starts measuring a scenario's usage; the function it returns
// ends the measure.
func startUsage() func() *benchUsage {
	t0, u0 := time.Now(), cputime.Self()
	m0, merr := cputime.Machine()
	return func() *benchUsage {
		own := cputime.Self().Sub(u0)
		u := &benchUsage{
			Seconds: time.Since(t0).Seconds(), Cores: runtime.NumCPU(),
			UserSeconds: own.User.Seconds(), SystemSeconds: own.System.Seconds(),
			InvoluntarySwitches: own.InvoluntarySwitches, VoluntarySwitches: own.VoluntarySwitches,
			MajorFaults: own.MajorFaults,
		}
		if m1, err := cputime.Machine(); merr == nil && err == nil {
			d := m1.Since(m0)
			u.OthersUserSeconds = max(d.User-own.User, 0).Seconds()
			u.KernelSeconds = max(d.Kernel-own.System, 0).Seconds()
			u.StealSeconds, u.IdleSeconds = d.Steal.Seconds(), d.Idle.Seconds()
		}
		return u
	}
}

// printBusyMachine names, under the table, the scenarios during which
// other processes took busyShare of the machine or more: their figures
// are the machine's leftovers, not Ferry's best.
func printBusyMachine(w io.Writer, run []string, results map[string]*benchResult) {
	var busy []string
	for _, sc := range run {
		if r := results[sc]; r != nil && r.Usage.othersShare() >= busyShare {
			busy = append(busy, fmt.Sprintf("%s %.0f%%", sc, 100*r.Usage.othersShare()))
		}
	}
	if len(busy) > 0 {
		fmt.Fprintf(w, "other processes used %d%% or more of the cores during: %s; those figures are below what this machine does alone (--json: usage).\n",
			int(100*busyShare), strings.Join(busy, ", "))
	}
}
