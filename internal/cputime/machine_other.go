//go:build !linux

package cputime

import "errors"

// Machine is not available outside Linux.
func Machine() (MachineTimes, error) {
	return MachineTimes{}, errors.New("cputime: the machine's CPU times need Linux")
}
