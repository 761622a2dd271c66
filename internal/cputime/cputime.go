//go:build unix

// Package cputime reads the process's CPU time (user + system), the figure
// benchmarks report beside wall time because it holds when other work
// shares the machine, and the machine's own CPU times, which show how
// much other work did.
package cputime

import (
	"syscall"
	"time"
)

// Now returns the CPU time (user + system) the process has used so far.
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Usage is what getrusage reports of the process at one moment: the
// figures that tell a slow benchmark run's causes apart (its own system
// time, the kernel taking its cores away, page faults that read the disk).
type Usage struct {
	User, System time.Duration
	// InvoluntarySwitches counts the times the kernel took a core from
	// one of the process's threads that still had work (another process
	// or thread was due); VoluntarySwitches the times a thread gave its
	// core up (it waited: on a lock, the disk, a channel).
	InvoluntarySwitches, VoluntarySwitches int64
	// MajorFaults counts page faults served from the disk.
	MajorFaults int64
}

// Self returns the usage so far of the process and of the children it
// has waited for (zero if getrusage fails): a benchmark that starts a
// helper process, such as a fake API, counts the helper's work as its
// own once it has waited for it.
func Self() Usage {
	var u Usage
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			return Usage{}
		}
		u.User += time.Duration(ru.Utime.Nano())
		u.System += time.Duration(ru.Stime.Nano())
		u.InvoluntarySwitches += int64(ru.Nivcsw)
		u.VoluntarySwitches += int64(ru.Nvcsw)
		u.MajorFaults += int64(ru.Majflt)
	}
	return u
}

// Sub returns u minus an earlier usage v.
func (u Usage) Sub(v Usage) Usage {
	return Usage{
		User: u.User - v.User, System: u.System - v.System,
		InvoluntarySwitches: u.InvoluntarySwitches - v.InvoluntarySwitches,
		VoluntarySwitches:   u.VoluntarySwitches - v.VoluntarySwitches,
		MajorFaults:         u.MajorFaults - v.MajorFaults,
	}
}
