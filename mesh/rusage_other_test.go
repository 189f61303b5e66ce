//go:build !unix

package mesh

import "time"

// cpuTime returns zeros where getrusage does not exist; the flood
// benchmarks' CPU figures are then meaningless (they are measured on
// Linux).
func cpuTime() (user, sys time.Duration) { return 0, 0 }
