package stream

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// acceptingLink is a memLink that takes peer-opened streams itself.
type acceptingLink struct {
	*memLink
	got    chan *Stream
	refuse atomic.Bool
}

func (l *acceptingLink) AcceptStream(s *Stream) bool {
	if l.refuse.Load() {
		return false
	}
	select {
	case l.got <- s:
		return true
	default:
		return false
	}
}

// An AcceptLink gets peer-opened streams directly; the streams it refuses
// are reset with CodeRefused, and Accept is never fed.
func TestAcceptLink(t *testing.T) {
	ab := newMemLink(faults{}, 1, testMTU, 1024)
	ba := &acceptingLink{memLink: newMemLink(faults{}, 2, testMTU, 1024), got: make(chan *Stream, 4)}
	a := NewMux(ab, testMuxConfig())
	b := NewMux(ba, testMuxConfig())
	ab.peer.Store(b)
	ba.peer.Store(a)
	t.Cleanup(func() { a.Close(); b.Close(); ab.close(); ba.close() })
	ctx := ctxT(t, 10*time.Second)

	s, _ := a.Open(ctx, Config{})
	if err := s.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var r *Stream
	select {
	case r = <-ba.got:
	case <-ctx.Done():
		t.Fatal("the AcceptLink never got the stream")
	}
	if m, err := r.Recv(ctx); err != nil || string(m) != "hello" {
		t.Fatalf("recv %q %v", m, err)
	}

	ba.refuse.Store(true)
	s2, _ := a.Open(ctx, Config{})
	if err := s2.Send(ctx, []byte("refused")); err != nil {
		t.Fatal(err)
	}
	var re *ResetError
	if _, err := s2.Recv(ctx); !errors.As(err, &re) || re.Code != CodeRefused || !re.Remote {
		t.Fatalf("refused stream: want a remote CodeRefused reset, got %v", err)
	}
	if st := b.Stats(); st.Accepted != 1 || st.Refused != 1 {
		t.Fatalf("accepted %d, refused %d; want 1, 1", st.Accepted, st.Refused)
	}
	short := ctxT(t, 20*time.Millisecond)
	if got, err := b.Accept(short); err == nil {
		t.Fatalf("Accept returned stream %d: streams belong to the AcceptLink", got.ID())
	}
}
