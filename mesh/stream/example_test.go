package stream_test

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/netmesh/netmesh/mesh/stream"
)

// pipeLink is a lossless in-memory Link: a goroutine hands each frame to
// the peer's Mux. The mesh's Link does the same with encrypted UDP.
type pipeLink struct {
	frames chan []byte
	peer   *stream.Mux
	done   sync.WaitGroup
}

func (l *pipeLink) SendFrame(head, data []byte) error {
	select {
	case l.frames <- append(append([]byte(nil), head...), data...):
		return nil
	default:
		return stream.ErrBackpressure // the "socket queue" is full
	}
}

func (l *pipeLink) MaxFrameSize() int { return 1131 }

func (l *pipeLink) run() {
	defer l.done.Done()
	for body := range l.frames {
		l.peer.HandleFrame(body) // on the "socket reader" goroutine
	}
}

func Example() {
	ab := &pipeLink{frames: make(chan []byte, 1024)}
	ba := &pipeLink{frames: make(chan []byte, 1024)}
	alice := stream.NewMux(ab, stream.MuxConfig{})
	bob := stream.NewMux(ba, stream.MuxConfig{})
	ab.peer, ba.peer = bob, alice
	ab.done.Add(1)
	ba.done.Add(1)
	go ab.run()
	go ba.run()

	ctx := context.Background()
	go func() {
		s, _ := alice.Open(ctx, stream.Config{Reliability: stream.Reliable})
		for _, msg := range []string{"hello", "world", string(make([]byte, 100_000))} {
			if err := s.SendBlocking(ctx, []byte(msg)); err != nil {
				panic(err)
			}
		}
		s.Close() // waits until bob acknowledged everything
	}()

	s, _ := bob.Accept(ctx)
	for {
		msg, err := s.Recv(ctx)
		if err == io.EOF {
			break
		}
		if len(msg) > 10 {
			fmt.Println(len(msg), "bytes")
			continue
		}
		fmt.Println(string(msg))
	}
	s.Close()

	alice.Close()
	bob.Close()
	close(ab.frames)
	close(ba.frames)
	ab.done.Wait()
	ba.done.Wait()
	// Output:
	// hello
	// world
	// 100000 bytes
}
