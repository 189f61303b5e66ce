package mesh

import (
	"runtime"
	"testing"
	"time"
)

func (hp *handlerPool) waitingNow() int {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return len(hp.waiting)
}

// call is a handlerCall that runs f.
func call(f func()) handlerCall {
	return handlerCall{h: func(*Stream, *Peer) { f() }}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A handler runs on the goroutine the previous one left waiting; at most
// maxIdle wait; a waiting goroutine leaves after idle, and all at close.
func TestHandlerPool(t *testing.T) {
	hp := &handlerPool{maxIdle: 2, idle: time.Hour}
	defer hp.close()
	ran := make(chan struct{})
	hp.run(call(func() { close(ran) }))
	<-ran
	waitFor(t, "the goroutine to wait", func() bool { return hp.waitingNow() == 1 })
	before := runtime.NumGoroutine()
	done := make(chan int, 1)
	hp.run(call(func() { done <- runtime.NumGoroutine() }))
	if n := <-done; n != before {
		t.Fatalf("%d goroutines while the second handler ran, %d before: a goroutine was started", n, before)
	}

	// Three at once: two wait after, the third ends.
	waitFor(t, "the goroutine to wait again", func() bool { return hp.waitingNow() == 1 })
	release := make(chan struct{})
	for range 3 {
		hp.run(call(func() { <-release }))
	}
	close(release)
	waitFor(t, "two waiting", func() bool { return hp.waitingNow() == 2 })

	hp.close()
	if n := hp.waitingNow(); n != 0 {
		t.Fatalf("%d waiting after close", n)
	}
	ran = make(chan struct{})
	hp.run(call(func() { close(ran) })) // after close it still runs (and its goroutine ends: goleak)
	<-ran
}

func TestHandlerPoolIdle(t *testing.T) {
	hp := &handlerPool{maxIdle: 4, idle: time.Second}
	defer hp.close()
	release := make(chan struct{})
	for range 3 {
		hp.run(call(func() { <-release }))
	}
	close(release)
	waitFor(t, "goroutines waiting", func() bool { return hp.waitingNow() > 0 })
	waitFor(t, "the idle goroutines to leave", func() bool { return hp.waitingNow() == 0 })
}
