package stream

import (
	"context"
	"testing"
	"time"
)

// TestPackedStreamKeepsSending: a stream whose small first fragment went
// in a pack sends its other fragments in the same flush, not when the
// next ACK or timer comes. The fragments pile up behind a refused frame:
// a small message in a small chunk, then a large message, which fills it
// and takes whole fragments after it.
func TestPackedStreamKeepsSending(t *testing.T) {
	ctx := context.Background()
	l := &captureLink{}
	m := NewMux(l, MuxConfig{MinRTO: time.Hour, MaxAckDelay: time.Hour, LinkRetry: time.Millisecond})
	t.Cleanup(func() { m.Close() })
	s, err := m.Open(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	w := s.key ^ 1
	l.refuseNext(1)
	for _, size := range []int{100, 5000} {
		if err := s.Send(ctx, message(uint64(size), size)); err != nil {
			t.Fatal(err)
		}
	}
	want := 101 + 5002 // the messages with their length prefixes
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bytes sent: the stream stopped after its packed fragment", got, want)
		}
		time.Sleep(time.Millisecond)
		_, fs := l.take(frameData, w)
		for _, f := range fs {
			got += len(f.Data)
		}
	}
}
