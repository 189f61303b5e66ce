package stream

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

func sampleFrames() []frame {
	ack := frame{Type: frameAck, Stream: 7, Seq: 1 << 40, Window: 300, NRanges: 2}
	ack.Ranges[0] = ackRange{1, 4}
	ack.Ranges[1] = ackRange{6, 100}
	return []frame{
		{Type: frameData, Stream: 3, Seq: 9, Data: []byte("hello")},
		{Type: frameData, Flags: flagFin, Stream: 3, Seq: 10, Data: []byte{}},
		{Type: frameData, Flags: flagUnreliable, Stream: 5, Seq: 1, FragIndex: 2, FragCount: 3, Data: []byte("xyz")},
		ack,
		{Type: frameAck, Stream: 2, Seq: 0, Window: 32},
		{Type: frameReset, Stream: 4, Code: 0xFFFF0001},
		{Type: frameReset, Flags: flagGraceful, Stream: 4},
		{Type: framePing, Token: 42},
		{Type: framePong, Token: 42},
		{Type: frameData, Flags: flagSplit | flagFin, Stream: 3, Seq: 11, Offset: 512, Total: 600, Data: make([]byte, 88)},
		{Type: frameData, Flags: flagSplit, Stream: 3, Seq: 12, Offset: 0, Total: 9000, Data: make([]byte, 1024)},
		{Type: framePadding, PadLen: 20}, // last: padding runs to the end
	}
}

func equalFrames(a, b *frame) bool {
	return a.Type == b.Type && a.Flags == b.Flags && a.Stream == b.Stream &&
		a.Seq == b.Seq && a.FragIndex == b.FragIndex && a.FragCount == b.FragCount &&
		a.Window == b.Window && a.NRanges == b.NRanges && a.Ranges == b.Ranges &&
		a.Code == b.Code && a.Token == b.Token && a.PadLen == b.PadLen &&
		bytes.Equal(a.Data, b.Data)
}

func TestFrameRoundTrip(t *testing.T) {
	var body []byte
	frames := sampleFrames()
	for i := range frames {
		body = appendFrame(body, &frames[i])
	}
	for i := range frames {
		var f frame
		n, err := decodeFrame(body, &f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !equalFrames(&f, &frames[i]) {
			t.Fatalf("frame %d: got %+v, want %+v", i, f, frames[i])
		}
		body = body[n:]
	}
	if len(body) != 0 {
		t.Fatalf("%d bytes left", len(body))
	}
}

func TestFrameRejects(t *testing.T) {
	ok := appendFrame(nil, &frame{Type: frameData, Stream: 1, Data: []byte("abc")})
	ack := frame{Type: frameAck, NRanges: 1}
	ack.Ranges[0] = ackRange{1, 2}
	okAck := appendFrame(nil, &ack)
	mut := func(b []byte, i int, v byte) []byte {
		c := bytes.Clone(b)
		c[i] = v
		return c
	}
	cases := map[string][]byte{
		"empty":              {},
		"unknown type":       {0x06},
		"data short header":  ok[:dataHeaderSize-1],
		"data short payload": ok[:len(ok)-1],
		"data unknown flag":  mut(ok, 1, 0x80),
		"data fin unrel":     mut(ok, 1, flagFin|flagUnreliable),
		"unrel short":        mut(ok, 1, flagUnreliable)[:dataHeaderSize+2],
		"ack short":          okAck[:len(okAck)-1],
		"ack too many":       mut(okAck, 1, maxAckRanges+1),
		"ack range at cum":   mut(okAck, ackHeaderSize, 0),
		"ack empty range":    mut(okAck, ackHeaderSize+4, 1),
		"reset short":        make([]byte, resetFrameSize-1),
		"padding garbage":    {0, 0, 1},
		"ping short":         {byte(framePing), 1, 2},
	}
	cases["reset short"][0] = byte(frameReset)
	unrel := appendFrame(nil, &frame{Type: frameData, Flags: flagUnreliable, FragIndex: 3, FragCount: 3})
	cases["unrel index beyond count"] = unrel
	cases["unrel zero count"] = mut(mut(unrel, 16, 0), 18, 0)
	split := func(off, total uint16, n int) []byte {
		return appendFrame(nil, &frame{Type: frameData, Flags: flagSplit, Offset: off, Total: total, Data: make([]byte, n)})
	}
	cases["split misaligned"] = split(64, 600, 256)
	cases["split beyond total"] = split(256, 400, 256)
	cases["split ragged middle"] = split(0, 600, 300)
	cases["split empty"] = split(0, 200, 0)
	cases["split unreliable"] = mut(split(0, 64, 64), 1, flagSplit|flagUnreliable)
	for name, b := range cases {
		var f frame
		if _, err := decodeFrame(b, &f); err == nil {
			t.Errorf("%s: accepted %x", name, b)
		}
	}
}

// FuzzDecodeFrame feeds arbitrary frame bodies to the decoder. Threat: a
// malicious peer with an authenticated session controls every byte of the
// stream frames it sends. The decoder must never panic or read beyond its
// input, and every frame it accepts must be canonical: encoding the
// decoded frame gives back exactly the bytes consumed, and decoding those
// gives the same frame (decode, encode, decode, equal).
func FuzzDecodeFrame(f *testing.F) {
	frames := sampleFrames()
	for i := range frames {
		f.Add(appendFrame(nil, &frames[i]))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			var fr frame
			n, err := decodeFrame(b, &fr)
			if err != nil {
				return
			}
			if n <= 0 || n > len(b) {
				t.Fatalf("consumed %d of %d bytes", n, len(b))
			}
			enc := appendFrame(nil, &fr)
			if !bytes.Equal(enc, b[:n]) {
				t.Fatalf("not canonical: %x re-encodes as %x", b[:n], enc)
			}
			var again frame
			m, err := decodeFrame(enc, &again)
			if err != nil || m != len(enc) || !equalFrames(&fr, &again) {
				t.Fatalf("round trip: %+v -> %+v (%v)", fr, again, err)
			}
			b = b[n:]
		}
	})
}

// TestHandleFrameGarbage feeds a Mux mutated and random frame bodies, as
// a malicious peer would: it must neither panic nor stop serving. (The
// garbage may claim any id of the peer's future streams, so the healthy
// stream is opened by the attacked side.)
func TestHandleFrameGarbage(t *testing.T) {
	p := newPair(t, faults{}, 41, testMuxConfig())
	r := rand.New(rand.NewPCG(41, 42))
	frames := sampleFrames()
	var seeds [][]byte
	for i := range frames {
		seeds = append(seeds, appendFrame(nil, &frames[i]))
	}
	for range 200000 {
		var b []byte
		if r.IntN(4) == 0 {
			b = make([]byte, r.IntN(64))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
		} else {
			b = bytes.Clone(seeds[r.IntN(len(seeds))])
			for range 1 + r.IntN(3) {
				if len(b) > 0 {
					b[r.IntN(len(b))] = byte(r.Uint32())
				}
			}
		}
		p.b.HandleFrame(b)
	}
	for len(p.b.acceptCh) > 0 {
		(<-p.b.acceptCh).Reset(1)
	}
	transferDir(t, p.b, p.a, [][]byte{message(1, 100000), message(2, 10)}, 10*time.Second)
	if st := p.b.Stats(); st.Malformed == 0 {
		t.Fatalf("no malformed frames counted: %+v", st)
	}
}

// Refusal answers the DATA frame that opens a stream with the RESET a Mux
// would send: the opener's stream id, CodeRefused. Anything else, or a
// buffer too small, gets no answer.
func TestRefusal(t *testing.T) {
	var b [16]byte
	open := appendFrame(nil, &frame{Type: frameData, Stream: 7, Data: []byte("hello")}) // the opener's key 6, written 6^1
	n := Refusal(b[:], open)
	var f frame
	if _, err := decodeFrame(b[:n], &f); err != nil {
		t.Fatalf("Refusal wrote %x: %v", b[:n], err)
	}
	if f.Type != frameReset || f.Stream != 6 || f.Code != CodeRefused {
		t.Fatalf("Refusal = %+v, want a RESET of the opener's stream 6 with CodeRefused", f)
	}
	for _, frames := range [][]byte{
		nil,
		open[:5],
		appendFrame(nil, &frame{Type: frameReset, Stream: 7, Code: 1}),
	} {
		if n := Refusal(b[:], frames); n != 0 {
			t.Errorf("Refusal(%x) = %x, want nothing", frames, b[:n])
		}
	}
	if n := Refusal(b[:9], open); n != 0 {
		t.Errorf("Refusal into 9 bytes wrote %d", n)
	}
}
