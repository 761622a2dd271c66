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
