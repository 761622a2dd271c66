//go:build !unix

package cputime

import "time"

// Now returns 0 where getrusage is not available.
func Now() time.Duration { return 0 }

// Self returns a zero Usage where getrusage is not available.
func Self() Usage { return Usage{} }
