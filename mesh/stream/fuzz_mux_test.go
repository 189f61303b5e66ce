package stream

import (
	"context"
	"encoding/binary"
	"testing"
)

// discardLink is a Link whose frames go nowhere.
type discardLink struct{}

func (discardLink) SendFrame(_, _ []byte) error { return nil }
func (discardLink) MaxFrameSize() int           { return testMTU }

// FuzzMux drives one Mux with a sequence of frame bodies from a malicious
// peer, reading what its accepted streams deliver after each. Threat: the
// peer controls every byte of its frames and their order. The Mux must not
// panic, and its receive-budget accounting must stay exact: what it counts
// as held, parked and promised equals what its streams hold, park and
// were promised, and no buffer escapes the count. Input: bodies, each preceded by a
// length byte; a length byte of 0 reads the streams instead.
func FuzzMux(f *testing.F) {
	frames := sampleFrames()
	var all []byte
	for i := range frames {
		b := appendFrame(nil, &frames[i])
		f.Add(append([]byte{byte(len(b))}, b...))
		all = append(append(all, byte(len(b))), b...)
	}
	f.Add(all)
	msg := appendFrame(nil, &frame{Type: frameData, Flags: flagFin, Stream: 3, Seq: 0, Data: []byte{5, 'h', 'e', 'l', 'l', 'o'}})
	big := appendFrame(nil, &frame{Type: frameData, Stream: 5, Seq: 0, Data: []byte{0x80, 0x80, 0x80, 0x08, 1, 2, 3}})
	f.Add(append(append(append([]byte{byte(len(msg))}, msg...), byte(len(big))), append(big, 0)...))
	// Two messages of 48 KiB against the 64 KiB budget: the second waits,
	// its fragments parked, until the first is read.
	var park []byte
	for _, key := range []uint32{3, 5} {
		for seq := range uint64(3) {
			data := make([]byte, 200)
			if seq == 0 {
				binary.PutUvarint(data, 48<<10)
			}
			b := appendFrame(nil, &frame{Type: frameData, Stream: key, Seq: seq, Data: data})
			park = append(append(park, byte(len(b))), b...)
		}
	}
	f.Add(append(park, 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg := testMuxConfig()
		cfg.RecvBudget = 64 << 10
		m := NewMux(discardLink{}, cfg)
		defer m.Close()
		done, cancel := context.WithCancel(context.Background())
		cancel() // reads take only what is ready
		var accepted []*Stream
		var buf []byte
		for len(in) > 0 {
			n := int(in[0])
			in = in[1:]
			if n == 0 {
				for {
					select {
					case s := <-m.acceptCh:
						accepted = append(accepted, s)
						continue
					default:
					}
					break
				}
				for _, s := range accepted {
					for {
						var err error
						if buf, err = s.ReadMessage(done, buf); err != nil {
							break
						}
					}
				}
			} else {
				n = min(n, len(in))
				m.HandleFrame(in[:n])
				in = in[n:]
			}
			m.mu.Lock()
			held, parked, promised := 0, 0, 0
			for _, s := range m.streams {
				held += s.rxHeldLocked()
				if s.waitingLocked() {
					parked += s.chunkBytes
				}
				promised += s.promised
			}
			alloc := m.allocatedRecvLocked()
			mHeld, mParked, mPromised := m.held, m.parked, m.promised
			m.mu.Unlock()
			switch {
			case held != mHeld || mHeld < 0:
				t.Fatalf("the Mux counts %d bytes held, its streams hold %d", mHeld, held)
			case parked != mParked || promised != mPromised || promised < 0:
				t.Fatalf("the Mux counts %d parked and %d promised, its streams %d and %d", mParked, mPromised, parked, promised)
			case alloc > held:
				t.Fatalf("the streams hold %d bytes of buffers, %d counted", alloc, held)
			}
		}
	})
}
