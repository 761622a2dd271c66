//go:build linux

package cputime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// MachineTimes is the whole machine's CPU time so far, summed over its
// cores, from /proc/stat, in its clock ticks (10 ms). Since converts the
// difference of two readings.
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

// Machine reads the machine's CPU times from /proc/stat.
func Machine() (MachineTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineTimes{}, err
	}
	return parseStat(b)
}

// parseStat reads /proc/stat's first line: "cpu  user nice system idle
// iowait irq softirq steal guest guest_nice" (kernels before 2.6.11 stop
// after softirq).
func parseStat(b []byte) (MachineTimes, error) {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := bytes.Fields(line)
	if len(f) < 8 || string(f[0]) != "cpu" {
		return MachineTimes{}, fmt.Errorf("/proc/stat: first line %.60q is not the cpu totals", line)
	}
	var v [8]int64
	for i := range v {
		if i+1 >= len(f) {
			break
		}
		// 59 bits a field: three of them add up without overflowing.
		n, err := strconv.ParseUint(string(f[i+1]), 10, 59)
		if err != nil {
			return MachineTimes{}, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
		}
		v[i] = int64(n)
	}
	user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	return MachineTimes{user: user + nice, kernel: system + irq + softirq, steal: steal, idle: idle + iowait}, nil
}
