package mesh

import (
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// The socket writer yields once before its system call: senders that
// were ready to run when it found its queue empty add their packets to
// the same write. On one processor, eight goroutines made ready while
// the writer is woken by a first packet all get in before it writes (at
// most one more write, should the scheduler's periodic fairness check
// pick the writer first); written at once, they took a write each.
func TestWriterBatchesReadySenders(t *testing.T) {
	m := startNode(t)
	dst := rawSocket(t).LocalAddr().(*net.UDPAddr).AddrPort()
	s := m.tr.sockFor(dst)
	send := func() {
		p := getOut(8)
		p.n, p.addr = 8, dst
		if err := m.tr.enqueue(s, p); err != nil {
			t.Error(err)
		}
	}
	const senders = 8
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	before := m.Stats()
	var wg sync.WaitGroup
	send() // wakes the writer
	for range senders {
		wg.Go(send)
	}
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); ; {
		after := m.Stats()
		packets, writes := after.PacketsWritten-before.PacketsWritten, after.SocketWrites-before.SocketWrites
		if packets >= senders+1 {
			if writes > 2 {
				t.Fatalf("%d packets from ready senders took %d writes, want at most 2", packets, writes)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d packets written", packets, senders+1)
		}
		time.Sleep(time.Millisecond)
	}
}
