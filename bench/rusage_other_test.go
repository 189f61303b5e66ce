//go:build !unix

package bench

import "time"

// cpuTime returns zero where getrusage does not exist; the CPU figures of
// BenchmarkScale are then meaningless (they are measured on Linux).
func cpuTime() time.Duration { return 0 }
