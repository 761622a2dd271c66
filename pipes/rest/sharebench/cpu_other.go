//go:build !unix

package sharebench

// cpuTime is not measured on this platform.
func cpuTime() float64 { return 0 }
