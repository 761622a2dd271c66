package cputime

import "time"

// clockTicks is the unit of the CPU times in /proc/PID/stat and
// /proc/stat (USER_HZ, 100 on every Linux architecture Go supports).
const clockTicks = 100

// MachineTimes is the whole machine's CPU time so far, summed over its
// cores, from /proc/stat, in its clock ticks (10 ms; Linux only, zero
// elsewhere). Since converts the difference of two readings.
type MachineTimes struct {
	user, kernel, steal, idle int64
}

// MachineDelta is the machine's CPU time between two readings, summed
// over its cores.
type MachineDelta struct {
	// User is every process's user-space time (user and nice; guests'
	// time is in it).
	User time.Duration
	// Kernel is the kernel's: system calls, the kernel's own threads
	// (writing dirty pages back, for one) and interrupts (system, irq,
	// softirq).
	Kernel time.Duration
	// Steal is the time a hypervisor ran something else on the virtual
	// cores, where it reports it (many do not: it then shows as slower
	// user and kernel time).
	Steal time.Duration
	// Idle is the cores' idle time and their time waiting for the disk
	// (idle, iowait).
	Idle time.Duration
}

// Since returns the machine's CPU time between an earlier reading and m.
func (m MachineTimes) Since(earlier MachineTimes) MachineDelta {
	tick := func(n int64) time.Duration { return time.Duration(n) * (time.Second / clockTicks) }
	return MachineDelta{User: tick(m.user - earlier.user), Kernel: tick(m.kernel - earlier.kernel),
		Steal: tick(m.steal - earlier.steal), Idle: tick(m.idle - earlier.idle)}
}
