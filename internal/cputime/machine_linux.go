//go:build linux

package cputime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

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
