package meshnet_test

import (
	"context"
	"io"
	"testing"

	"github.com/netmesh/netmesh/mesh"
)

// BenchmarkThroughput moves 64 KiB writes one way over loopback, through
// a Conn (Write and Read with a 32 KiB buffer, as io.Copy does) and, for
// comparison in the same run, through the raw stream underneath
// (SendBlocking and ReadMessage of 64 KiB messages).
func BenchmarkThroughput(b *testing.B) {
	const size = 64 << 10
	b.Run("conn", func(b *testing.B) {
		a, m := directPair(b)
		ac, bc := dialAccept(b, a, m, listen(b, m))
		done := make(chan error, 1)
		go func() {
			_, err := io.CopyN(io.Discard, bc, int64(b.N)*size)
			done <- err
		}()
		buf := make([]byte, size)
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			if _, err := ac.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	})
	b.Run("stream", func(b *testing.B) {
		a, m := directPair(b)
		ctx := context.Background()
		l, err := m.ListenStreams(testProto)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		s, err := a.OpenStreamOn(ctx, a.Peer(m.ID()), testProto, mesh.StreamConfig{})
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, size)
		done := make(chan error, 1)
		go func() {
			done <- func() error {
				rs, _, err := l.Accept(ctx)
				if err != nil {
					return err
				}
				var rbuf []byte
				for range b.N {
					if rbuf, err = rs.ReadMessage(ctx, rbuf); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			if err := s.SendBlocking(ctx, buf); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	})
}
