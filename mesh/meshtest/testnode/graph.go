package testnode

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/mesh"
)

// RandomGraph returns the links of a connected random graph on n nodes in
// which every node links to k others it picks (fewer when it has no
// unlinked node left to pick), so a node's degree is k plus the links
// others picked to it: 2k on average. Node i's first link goes to a
// random earlier node, which keeps the graph connected; no pair is linked
// twice. A link {a, b} means a dials b. The graph depends only on r.
func RandomGraph(r *rand.Rand, n, k int) [][2]int {
	linked := make(map[[2]int]bool)
	var links [][2]int
	add := func(a, b int) bool {
		if a == b || linked[[2]int{a, b}] || linked[[2]int{b, a}] {
			return false
		}
		linked[[2]int{a, b}] = true
		links = append(links, [2]int{a, b})
		return true
	}
	for i := range n {
		picked := 0
		if i > 0 && k > 0 && add(i, r.IntN(i)) {
			picked++
		}
		for _, j := range r.Perm(n) {
			if picked == k {
				break
			}
			if add(i, j) {
				picked++
			}
		}
	}
	return links
}

// connectWorkers is how many links ConnectGraph sets up at once: enough
// to overlap the handshakes' round trips, few enough that a busy machine
// does not time them out.
const connectWorkers = 16

// ConnectGraph connects nodes along links (a RandomGraph), several links
// at once, and returns when every session is up on both ends.
func ConnectGraph(tb testing.TB, nodes []*mesh.Mesh, links [][2]int) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := make(chan [2]int)
	errs := make(chan error, connectWorkers)
	var wg sync.WaitGroup
	for range connectWorkers {
		wg.Go(func() {
			for l := range work {
				if err := connect(nodes[l[0]], nodes[l[1]]); err != nil {
					errs <- fmt.Errorf("link %d-%d: %w", l[0], l[1], err)
					cancel()
					return
				}
			}
		})
	}
feed:
	for _, l := range links {
		select {
		case work <- l:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
}

// connect is Connect for goroutines other than the test's.
func connect(a, b *mesh.Mesh) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := a.Connect(ctx, b.Addr(), mesh.Pin{Key: b.Identity().PublicKey()}); err != nil {
		return err
	}
	for {
		if q := b.Peer(a.ID()); q != nil && q.IsUp() {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s never confirmed the session", b.ID().Short())
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitIndexes waits until the capability index of every node holds want
// live nodes, and fails the test if the total held stops growing for
// stall: a slow machine only slows convergence, a broken gossip stalls
// it. It returns when the last index filled.
func WaitIndexes(tb testing.TB, nodes []*mesh.Mesh, want int, stall time.Duration) time.Time {
	tb.Helper()
	pending := append([]*mesh.Mesh(nil), nodes...)
	best, lastGain := -1, time.Now()
	for {
		held := 0
		rest := pending[:0]
		for _, m := range pending {
			if n := m.Capabilities().Index().Len(); n < want {
				held += n
				rest = append(rest, m)
			}
		}
		pending = rest
		now := time.Now()
		if len(pending) == 0 {
			return now
		}
		held += (len(nodes) - len(pending)) * want
		if held > best {
			best, lastGain = held, now
		} else if now.Sub(lastGain) > stall {
			tb.Fatalf("capability gossip stalled for %v: %d of %d nodes hold fewer than %d nodes (%d of %d entries)",
				stall, len(pending), len(nodes), want, held, len(nodes)*want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
