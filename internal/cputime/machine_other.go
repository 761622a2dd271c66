//go:build !linux

package cputime

import (
	"errors"
	"time"
)

// MachineTimes is the whole machine's CPU time so far (Linux only).
type MachineTimes struct{}

// MachineDelta is the machine's CPU time between two readings.
type MachineDelta struct {
	User, Kernel, Steal, Idle time.Duration
}

// Since returns zeros outside Linux.
func (m MachineTimes) Since(earlier MachineTimes) MachineDelta { return MachineDelta{} }

// Machine is not available outside Linux.
func Machine() (MachineTimes, error) {
	return MachineTimes{}, errors.New("cputime: the machine's CPU times need Linux")
}
