//go:build !unix

package cputime

import "time"

// Now returns 0 where getrusage is not available.
func Now() time.Duration { return 0 }
