//go:build !unix

package cputime

import "time"

// Now returns 0 where getrusage is not available.
func Now() time.Duration { return 0 }

// Usage is what getrusage reports of the process; zero where it is not
// available.
type Usage struct {
	User, System                           time.Duration
	InvoluntarySwitches, VoluntarySwitches int64
	MajorFaults                            int64
}

// Self returns a zero Usage where getrusage is not available.
func Self() Usage { return Usage{} }

// Sub returns u minus v.
func (u Usage) Sub(v Usage) Usage {
	return Usage{User: u.User - v.User, System: u.System - v.System,
		InvoluntarySwitches: u.InvoluntarySwitches - v.InvoluntarySwitches,
		VoluntarySwitches:   u.VoluntarySwitches - v.VoluntarySwitches,
		MajorFaults:         u.MajorFaults - v.MajorFaults}
}
