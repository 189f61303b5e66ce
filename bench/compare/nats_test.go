package compare

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/mesh/meshtest/testnode"
)

// NATS, the system people pick for pub/sub and request/reply, measured in
// the same shapes as netmesh's channels and rpc: an embedded nats-server
// and nats.go clients in the same process, plaintext over loopback, one
// broker hop (client, server, client). Every NATS client is a connection
// of its own, as separate processes would have.

// fanOutSubscribers and fanOutSize are BenchmarkFanOut's shape: one
// publisher, ten subscribers, 256-byte messages.
const (
	fanOutSubscribers = 10
	fanOutSize        = 256
	// fanOutWindow is how far the windowed publisher may run ahead of
	// the slowest subscriber, in messages.
	fanOutWindow = 32
	// fanOutQuiet ends an unthrottled run: once the publisher is done,
	// the subscribers are given this long without a delivery to catch up;
	// what has not arrived then is lost.
	fanOutQuiet = 200 * time.Millisecond
)

// startNATS starts an embedded nats-server on a random port of
// 127.0.0.1 and returns its client URL; it stops when the run ends.
func startNATS(tb testing.TB) string {
	tb.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{
		Host:   "127.0.0.1",
		Port:   -1,
		NoLog:  true,
		NoSigs: true,
		// The default pending limit of a client connection (64 MiB) and
		// max payload are kept: this is NATS as people run it.
	})
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(setupTimeout) {
		tb.Fatal("nats-server did not start")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}

// natsConn connects a client to url, closed when the run ends.
func natsConn(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Timeout(setupTimeout))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// natsUnary serves unary calls through one nats-server: a responder
// connection answering on a subject, a caller connection whose callers
// share it (nats.go multiplexes their replies on one inbox).
func natsUnary(tb testing.TB) unary {
	url := startNATS(tb)
	srv, cli := natsConn(tb, url), natsConn(tb, url)
	if _, err := srv.Subscribe("echo", func(m *nats.Msg) { m.Respond(m.Data) }); err != nil {
		tb.Fatal(err)
	}
	if err := srv.Flush(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	return unary{
		call: func(req []byte) ([]byte, error) {
			m, err := cli.RequestWithContext(ctx, "echo", req)
			if err != nil {
				return nil, err
			}
			return m.Data, nil
		},
		stop: cancel,
	}
}

// fanOut is one publisher and its subscribers under test: publish sends
// one message to every subscriber (and reports how many it could not
// send to); each subscriber's receive loop calls got for every message.
type fanOut struct {
	publish func(msg []byte) (failed int, err error)
	// start starts the subscribers' receive loops, which call got(i)
	// for each message subscriber i receives, until stop.
	start func(got func(i int))
	stop  func()
	pkts  func() uint64
}

// BenchmarkFanOut measures pub/sub fan-out: one publisher, ten subscriber
// nodes (connections, for NATS), 256-byte messages; one op is one
// published message, deliveries/s the rate subscribers receive them,
// cpu-ns/delivery the process's CPU time (user and system, publisher,
// subscribers and for NATS the broker) per delivery.
//
//   - mode=window: the publisher stays at most 32 messages ahead of the
//     slowest subscriber, so nothing should be lost.
//   - mode=flood: the publisher publishes as fast as it can; loss-% is the
//     share of the deliveries (ops × subscribers) that never arrived,
//     whether the publisher could not send them or they were dropped on
//     the way.
//
// netmesh: channel Publish on a registered channel (a reliable stream per
// subscriber); NATS: Publish on a subject each subscriber connection
// subscribed to.
func BenchmarkFanOut(b *testing.B) {
	for _, mode := range []string{"window", "flood"} {
		b.Run("mode="+mode, func(b *testing.B) {
			b.Run("impl=nats", func(b *testing.B) { runFanOut(b, mode, natsFanOut(b)) })
			b.Run("impl=netmesh", func(b *testing.B) { runFanOut(b, mode, meshFanOut(b)) })
		})
	}
}

func runFanOut(b *testing.B, mode string, f fanOut) {
	defer f.stop()
	var counts [fanOutSubscribers]atomic.Int64
	var total atomic.Int64
	start := time.Now()
	var last atomic.Int64 // when the latest delivery arrived, ns after start
	wake := make(chan struct{}, 1)
	f.start(func(i int) {
		counts[i].Add(1)
		total.Add(1)
		last.Store(int64(time.Since(start)))
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	slowest := func() int64 {
		low := int64(math.MaxInt64)
		for i := range counts {
			low = min(low, counts[i].Load())
		}
		return low
	}
	defer watchdog(b, &total, stallTimeout, f.stop)()
	msg := make([]byte, fanOutSize)
	failed := 0
	var pk0 uint64
	if f.pkts != nil {
		pk0 = f.pkts()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for i := range b.N {
		if mode == "window" {
			for int64(i)-slowest() >= fanOutWindow {
				<-wake
			}
		}
		n, err := f.publish(msg)
		if err != nil {
			b.Fatal(err)
		}
		failed += n
	}
	// Wait for every delivery; in flood mode, give up on the rest once
	// fanOutQuiet passes without one.
	want := int64(b.N) * fanOutSubscribers
	for total.Load() < want {
		if mode == "window" {
			<-wake
			continue
		}
		if time.Since(start)-time.Duration(last.Load()) > fanOutQuiet {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	got := total.Load()
	b.ReportMetric(float64(got)/time.Duration(last.Load()).Seconds(), "deliveries/s")
	if got > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(got), "cpu-ns/delivery")
	}
	b.ReportMetric(100*float64(want-got)/float64(want), "loss-%")
	if f.pkts != nil {
		b.ReportMetric(float64(f.pkts()-pk0)/float64(got), "pub-pkts/delivery")
	}
	if mode == "window" && (got != want || failed > 0) {
		b.Fatalf("windowed run lost %d of %d deliveries (%d publishes failed)", want-got, want, failed)
	}
}

// natsFanOut is a publisher connection and ten subscriber connections to
// one nats-server.
func natsFanOut(tb testing.TB) fanOut {
	url := startNATS(tb)
	pub := natsConn(tb, url)
	subs := make([]*nats.Conn, fanOutSubscribers)
	for i := range subs {
		subs[i] = natsConn(tb, url)
	}
	var subscriptions []*nats.Subscription
	return fanOut{
		publish: func(msg []byte) (int, error) { return 0, pub.Publish("fan", msg) },
		start: func(got func(i int)) {
			for i, nc := range subs {
				s, err := nc.Subscribe("fan", func(*nats.Msg) { got(i) })
				if err != nil {
					tb.Fatal(err)
				}
				// As many pending messages as a run publishes: a slow
				// subscriber is not cut off by the client library.
				s.SetPendingLimits(-1, -1)
				subscriptions = append(subscriptions, s)
				if err := nc.Flush(); err != nil {
					tb.Fatal(err)
				}
			}
		},
		stop: func() {
			for _, s := range subscriptions {
				s.Unsubscribe()
			}
		},
	}
}

// meshFanOut is a publisher node with a channel and ten subscriber nodes
// connected to it.
func meshFanOut(tb testing.TB) fanOut {
	pub := testnode.Start(tb)
	if err := pub.RegisterChannel("fan", channel.Config{PendingLimit: channel.MaxPendingLimit}); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	subs := make([]*channel.Subscription, fanOutSubscribers)
	for i := range subs {
		n := testnode.Start(tb)
		testnode.Connect(tb, n, pub)
		s, err := n.SubscribeChannel(ctx, pub.ID(), "fan", nil)
		if err != nil {
			tb.Fatal(err)
		}
		subs[i] = s
	}
	var wg sync.WaitGroup
	return fanOut{
		publish: func(msg []byte) (int, error) {
			rep, err := pub.Publish(ctx, "fan", msg)
			return len(rep.Failures), err
		},
		start: func(got func(i int)) {
			for i, s := range subs {
				wg.Go(func() {
					for {
						if _, err := s.Recv(ctx); err != nil {
							return
						}
						got(i)
					}
				})
			}
		},
		stop: func() {
			cancel()
			wg.Wait()
		},
		pkts: func() uint64 {
			var n uint64
			for _, p := range pub.Stats().Peers {
				n += p.TxPackets + p.RxPackets
			}
			return n
		},
	}
}
