package stream

import (
	"context"
	"fmt"
	"testing"
)

// benchPair is a lossless pair with production timers.
func benchStream(b *testing.B) (*Stream, *Stream) {
	p := newPair(b, faults{}, 1, MuxConfig{})
	ctx := context.Background()
	s, _ := p.a.Open(ctx, Config{})
	if err := s.Send(ctx, []byte("open")); err != nil {
		b.Fatal(err)
	}
	r, err := p.b.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.Recv(ctx); err != nil {
		b.Fatal(err)
	}
	return s, r
}

// BenchmarkStreamThroughput is one reliable stream of 64 KiB messages over
// the in-memory link: MB/s of the engine (fragmenting, acknowledging,
// reassembling), without crypto or sockets.
func BenchmarkStreamThroughput(b *testing.B) {
	s, r := benchStream(b)
	ctx := context.Background()
	msg := make([]byte, 64<<10)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, len(msg))
		var err error
		for range b.N {
			if buf, err = r.ReadMessage(ctx, buf); err != nil {
				break
			}
		}
		done <- err
	}()
	b.ResetTimer()
	for range b.N {
		if err := s.SendBlocking(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSmallMessages is 64-byte messages on one reliable stream:
// allocs/op is the steady-state cost per message (the target is 0).
func BenchmarkSmallMessages(b *testing.B) {
	s, r := benchStream(b)
	ctx := context.Background()
	msg := make([]byte, 64)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 0, 256)
		var err error
		for range b.N {
			if buf, err = r.ReadMessage(ctx, buf); err != nil {
				break
			}
		}
		done <- err
	}()
	b.ResetTimer()
	for range b.N {
		if err := s.SendBlocking(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkExchange is a unary call's streams over the in-memory link: a
// new stream per op carrying a 16-byte request that ends the opener's
// side and a 16-byte reply that ends the other's. With release=true the
// opener releases its stream after the reply, as rpc's caller does, and
// B/op shows the Stream it no longer allocates.
func BenchmarkExchange(b *testing.B) {
	for _, release := range []bool{false, true} {
		b.Run(fmt.Sprintf("release=%v", release), func(b *testing.B) {
			p := newPair(b, faults{}, 1, MuxConfig{})
			msg := make([]byte, 16)
			b.ReportAllocs()
			for b.Loop() {
				s, _, _, _ := exchange(b, p, msg, msg, nil)
				if release {
					s.Release()
				}
			}
		})
	}
}
