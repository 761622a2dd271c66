//go:build unix

// Package cputime reads the process's CPU time (user + system), the figure
// benchmarks report beside wall time because it holds when other work
// shares the machine.
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
