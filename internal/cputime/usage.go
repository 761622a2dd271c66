package cputime

import "time"

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

// Sub returns u minus an earlier usage v.
func (u Usage) Sub(v Usage) Usage {
	return Usage{
		User: u.User - v.User, System: u.System - v.System,
		InvoluntarySwitches: u.InvoluntarySwitches - v.InvoluntarySwitches,
		VoluntarySwitches:   u.VoluntarySwitches - v.VoluntarySwitches,
		MajorFaults:         u.MajorFaults - v.MajorFaults,
	}
}
