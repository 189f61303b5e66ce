package channel

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
)

var errFull = errors.New("fake: queue full")

// fullTransport is a fakeNode whose sends to some peers find their queue
// full until the test makes room; it is a Waiter.
type fullTransport struct {
	*fakeNode
	mu    sync.Mutex
	full  map[identity.NodeID]chan struct{} // closed when room comes
	waits int                               // SendWait calls
}

// publisherWithFullQueues adds a node to net whose engine sends through a
// fullTransport.
func publisherWithFullQueues(t *testing.T, net *fakeNet) (*fakeNode, *fullTransport) {
	t.Helper()
	n := net.add(Options{})
	ft := &fullTransport{fakeNode: n, full: make(map[identity.NodeID]chan struct{})}
	e, err := New(n.id, ft, Options{Now: net.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	n.e = e
	return n, ft
}

// fill makes sends to id find no room until the returned func is called.
func (f *fullTransport) fill(id identity.NodeID) (room func()) {
	c := make(chan struct{})
	f.mu.Lock()
	f.full[id] = c
	f.mu.Unlock()
	return sync.OnceFunc(func() { close(c) })
}

func (f *fullTransport) room(id identity.NodeID) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.full[id]
}

func (f *fullTransport) waited() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waits
}

func (f *fullTransport) Send(to identity.NodeID, msg []byte) error {
	if c := f.room(to); c != nil {
		select {
		case <-c:
		default:
			return errFull
		}
	}
	return f.fakeNode.Send(to, msg)
}

func (f *fullTransport) SendWait(ctx context.Context, to identity.NodeID, msg []byte) error {
	f.mu.Lock()
	f.waits++
	f.mu.Unlock()
	if c := f.room(to); c != nil {
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return f.fakeNode.Send(to, msg)
}

// TestPublishWaitsForRoom: a subscriber whose queue is full gets the
// message once room comes, after the others got it, and Publish reports
// it delivered.
func TestPublishWaitsForRoom(t *testing.T) {
	net := newFakeNet(t)
	pub, ft := publisherWithFullQueues(t, net)
	a, b := net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "news", Config{PublishWait: time.Hour})
	sa, sb := mustSubscribe(t, a, pub, "news", nil), mustSubscribe(t, b, pub, "news", nil)
	room := ft.fill(a.ID())
	done := make(chan PublishReport, 1)
	go func() {
		r, err := pub.e.Publish(context.Background(), "news", []byte("x"))
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	ctx := ctxT(t)
	for ft.waited() == 0 {
		if ctx.Err() != nil {
			t.Fatal("Publish never waited for the full subscriber")
		}
		time.Sleep(time.Millisecond)
	}
	if sb.Stats().Received != 1 || sa.Stats().Received != 0 {
		t.Fatalf("while waiting for a: b received %d, a %d; want 1, 0", sb.Stats().Received, sa.Stats().Received)
	}
	select {
	case r := <-done:
		t.Fatalf("Publish returned before a had room: %+v", r)
	default:
	}
	room()
	r := <-done
	if r.Delivered != 2 || len(r.Failures) != 0 || sa.Stats().Received != 1 {
		t.Fatalf("after room: report %+v, a received %d", r, sa.Stats().Received)
	}
	if st := pub.e.Stats(); st.PublishWaits != 1 || st.SendErrors != 0 {
		t.Fatalf("stats: %d publish waits, %d send errors; want 1, 0", st.PublishWaits, st.SendErrors)
	}
}

// TestPublishMarksSlowSubscriber: a subscriber without room for all of
// PublishWait fails with ErrSlowSubscriber, and later publishes do not
// wait for it until a send to it goes through again.
func TestPublishMarksSlowSubscriber(t *testing.T) {
	net := newFakeNet(t)
	pub, ft := publisherWithFullQueues(t, net)
	a, b := net.add(Options{}), net.add(Options{})
	mustRegister(t, pub, "news", Config{PublishWait: 20 * time.Millisecond})
	mustSubscribe(t, a, pub, "news", nil)
	mustSubscribe(t, b, pub, "news", nil)
	publish := func() PublishReport {
		t.Helper()
		r, err := pub.e.Publish(ctxT(t), "news", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ft.fill(a.ID())
	r := publish()
	if r.Delivered != 1 || len(r.Failures) != 1 || r.Failures[0].Peer != a.ID() || !errors.Is(r.Failures[0].Err, ErrSlowSubscriber) {
		t.Fatalf("a full for PublishWait: report %+v, want a failed with ErrSlowSubscriber", r)
	}
	if r := publish(); len(r.Failures) != 1 || ft.waited() != 1 || errors.Is(r.Failures[0].Err, ErrSlowSubscriber) {
		t.Fatalf("a slow: report %+v after %d waits; want a failed at once (1 wait)", r, ft.waited())
	}
	ft.fill(a.ID())() // room again
	if r := publish(); r.Delivered != 2 {
		t.Fatalf("a caught up: report %+v, want both delivered", r)
	}
	ft.fill(a.ID())
	if r := publish(); len(r.Failures) != 1 || ft.waited() != 2 {
		t.Fatalf("a full again: report %+v after %d waits; want it waited for again (2 waits)", r, ft.waited())
	}
}

// TestPublishWaitEndsWithCaller: the caller's context ends a wait early;
// that does not mark the subscriber slow.
func TestPublishWaitEndsWithCaller(t *testing.T) {
	net := newFakeNet(t)
	pub, ft := publisherWithFullQueues(t, net)
	a := net.add(Options{})
	mustRegister(t, pub, "news", Config{PublishWait: time.Hour})
	mustSubscribe(t, a, pub, "news", nil)
	ft.fill(a.ID())
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		r, err := pub.e.Publish(ctx, "news", []byte("x"))
		cancel()
		if err != nil || len(r.Failures) != 1 || !errors.Is(r.Failures[0].Err, context.DeadlineExceeded) || errors.Is(r.Failures[0].Err, ErrSlowSubscriber) {
			t.Fatalf("publish %d: report %+v, %v; want a failed with the caller's deadline", i, r, err)
		}
	}
	if ft.waited() != 2 {
		t.Fatalf("%d waits, want 2: the caller's deadline must not mark a subscriber slow", ft.waited())
	}
}

// TestPublishWaitNegativeNeverWaits: PublishWait < 0 reports a full
// subscriber at once.
func TestPublishWaitNegativeNeverWaits(t *testing.T) {
	net := newFakeNet(t)
	pub, ft := publisherWithFullQueues(t, net)
	a := net.add(Options{})
	mustRegister(t, pub, "news", Config{PublishWait: -1})
	mustSubscribe(t, a, pub, "news", nil)
	ft.fill(a.ID())
	r, err := pub.e.Publish(ctxT(t), "news", []byte("x"))
	if err != nil || len(r.Failures) != 1 || !errors.Is(r.Failures[0].Err, errFull) || ft.waited() != 0 {
		t.Fatalf("report %+v, %v after %d waits; want the Transport's error and no wait", r, err, ft.waited())
	}
}
