//go:build unix

package bench

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time, user plus system, the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
