package bench

import (
	"context"
	"testing"
	"time"

	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// BenchmarkChannelFanOut100: one publisher, 100 subscriber nodes on
// loopback, 64-byte payloads. One op is one Publish that every subscriber
// receives; deliveries/s counts messages read by subscribers.
func BenchmarkChannelFanOut100(b *testing.B) {
	const subscribers = 100
	pub := testnode.Start(b)
	if err := pub.RegisterChannel("bench", channel.Config{PendingLimit: channel.MaxPendingLimit}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	subs := make([]*channel.Subscription, subscribers)
	for i := range subs {
		n := testnode.Start(b)
		if _, err := n.Connect(ctx, pub.Addr(), mesh.Pin{Key: pub.Identity().PublicKey()}); err != nil {
			b.Fatal(err)
		}
		s, err := n.SubscribeChannel(ctx, pub.ID(), "bench", nil)
		if err != nil {
			b.Fatal(err)
		}
		subs[i] = s
	}
	done := make(chan error, subscribers)
	for _, s := range subs {
		go func() {
			for range b.N {
				if _, err := s.Recv(ctx); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	payload := make([]byte, 64)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		rep, err := pub.Publish(ctx, "bench", payload)
		if err != nil {
			b.Fatal(err)
		}
		if rep.Delivered != subscribers {
			b.Fatalf("delivered %d of %d: %v", rep.Delivered, subscribers, rep.Failures[0])
		}
	}
	for range subs {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*subscribers)/time.Since(start).Seconds(), "deliveries/s")
}
