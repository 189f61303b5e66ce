package stream

import (
	"encoding/binary"
	"errors"
)

// A frame body (what Link.SendFrame carries) is a sequence of one or more
// stream frames. Each starts with a type byte; every field is little
// endian and fixed width, so a decoder checks exact sizes without
// arithmetic on attacker-controlled varints. docs/STREAMS.md draws every
// byte.
//
//	PADDING  00 00 ... 00                      zero bytes to the end of the body
//	DATA     01 flags stream:4 seq:8 len:2 [ext1:2 ext2:2] payload:len
//	ACK      02 n stream:4 cum:8 window:4 n*(start:4 end:4)
//	RESET    03 flags stream:4 code:4
//	PING     04 token:8
//	PONG     05 token:8
type frameType uint8

const (
	framePadding frameType = 0x00
	frameData    frameType = 0x01
	frameAck     frameType = 0x02
	frameReset   frameType = 0x03
	framePing    frameType = 0x04
	framePong    frameType = 0x05
)

// DATA flags.
const (
	// flagFin marks the last fragment of a reliable stream's send side.
	flagFin = 0x01
	// flagUnreliable marks a fragment of an unreliable stream; it adds the
	// fragment index and count to the header.
	flagUnreliable = 0x02
	// flagSplit marks a part of a reliable fragment too large for the
	// current path MTU (cut before the path MTU fell); it adds the part's
	// byte offset in the fragment and the fragment's total length.
	flagSplit      = 0x04
	dataFlagsKnown = flagFin | flagUnreliable | flagSplit

	// splitBlock is the alignment of split parts: every part but the last
	// of a fragment is a multiple of 256 bytes long, so the receiver
	// tracks a fragment's parts in a 64-bit mask of 256-byte blocks (36
	// cover the largest fragment), and a part fits the smallest frame a
	// Link may have (512 bytes).
	splitBlock = 256
)

// RESET flags.
const (
	// flagGraceful turns a RESET into the end of an unreliable stream: the
	// peer's Recv returns io.EOF after the messages it already holds.
	flagGraceful    = 0x01
	resetFlagsKnown = flagGraceful
)

// Frame sizes.
const (
	dataHeaderSize           = 16 // type, flags, stream, seq, len
	unreliableDataHeaderSize = 20 // plus fragment index and count (or split offset and total)
	ackHeaderSize            = 18 // type, n, stream, cum, window
	ackRangeSize             = 8  // start, end
	resetFrameSize           = 10 // type, flags, stream, code
	pingFrameSize            = 9  // type, token
	maxAckFrameSize          = ackHeaderSize + maxAckRanges*ackRangeSize
)

// errFrame is the one error of the decoder: malformed input is dropped and
// counted, so its exact reason never reaches the user.
var errFrame = errors.New("stream: malformed frame")

// ackRange is a selectively acknowledged span of fragments
// [cum+Start, cum+End), relative to the ACK's cumulative sequence.
type ackRange struct {
	Start, End uint32
}

// frame is one decoded stream frame. Data aliases the decoded body.
type frame struct {
	Type      frameType
	Flags     uint8
	Stream    uint32 // wire stream id (see Mux for the direction bit)
	Seq       uint64 // DATA: fragment sequence or unreliable message id; ACK: cumulative
	FragIndex uint16 // unreliable DATA only
	FragCount uint16 // unreliable DATA only
	Offset    uint16 // split DATA only: the part's offset in the fragment
	Total     uint16 // split DATA only: the fragment's length
	Window    uint32 // ACK: fragments the receiver accepts beyond cum
	NRanges   int
	Ranges    [maxAckRanges]ackRange
	Code      uint32 // RESET
	Token     uint64 // PING, PONG
	PadLen    int    // PADDING: bytes including the type byte
	Data      []byte // DATA payload
}

// decodeFrame decodes the first frame of b into f and returns its size.
// It never panics and never reads beyond b; f.Data aliases b.
func decodeFrame(b []byte, f *frame) (int, error) {
	if len(b) == 0 {
		return 0, errFrame
	}
	f.Type = frameType(b[0])
	switch f.Type {
	case framePadding:
		for _, c := range b {
			if c != 0 {
				return 0, errFrame
			}
		}
		f.PadLen = len(b)
		return len(b), nil
	case frameData:
		if len(b) < dataHeaderSize {
			return 0, errFrame
		}
		f.Flags = b[1]
		if f.Flags&^dataFlagsKnown != 0 || f.Flags&flagUnreliable != 0 && f.Flags&(flagFin|flagSplit) != 0 {
			return 0, errFrame
		}
		f.Stream = binary.LittleEndian.Uint32(b[2:])
		f.Seq = binary.LittleEndian.Uint64(b[6:])
		n := int(binary.LittleEndian.Uint16(b[14:]))
		h := dataHeaderSize
		f.FragIndex, f.FragCount, f.Offset, f.Total = 0, 0, 0, 0
		if f.Flags&(flagUnreliable|flagSplit) != 0 {
			if len(b) < unreliableDataHeaderSize {
				return 0, errFrame
			}
			x := binary.LittleEndian.Uint16(b[16:])
			y := binary.LittleEndian.Uint16(b[18:])
			h = unreliableDataHeaderSize
			if f.Flags&flagUnreliable != 0 {
				if y == 0 || x >= y {
					return 0, errFrame
				}
				f.FragIndex, f.FragCount = x, y
			} else {
				// A part is non-empty, block aligned, within the fragment,
				// and a whole number of blocks unless it ends the fragment.
				end := int(x) + n
				if n == 0 || int(x)%splitBlock != 0 || end > int(y) || (end != int(y) && n%splitBlock != 0) {
					return 0, errFrame
				}
				f.Offset, f.Total = x, y
			}
		}
		if len(b)-h < n {
			return 0, errFrame
		}
		f.Data = b[h : h+n : h+n]
		return h + n, nil
	case frameAck:
		if len(b) < ackHeaderSize {
			return 0, errFrame
		}
		n := int(b[1])
		if n > maxAckRanges || len(b) < ackHeaderSize+n*ackRangeSize {
			return 0, errFrame
		}
		f.Stream = binary.LittleEndian.Uint32(b[2:])
		f.Seq = binary.LittleEndian.Uint64(b[6:])
		f.Window = binary.LittleEndian.Uint32(b[14:])
		f.NRanges = n
		var prev uint32 // ranges start above cum and grow strictly
		for i := range n {
			o := ackHeaderSize + i*ackRangeSize
			r := ackRange{binary.LittleEndian.Uint32(b[o:]), binary.LittleEndian.Uint32(b[o+4:])}
			if r.Start <= prev || r.End <= r.Start {
				return 0, errFrame
			}
			if f.Seq+uint64(r.End) < f.Seq { // the span must not wrap
				return 0, errFrame
			}
			f.Ranges[i] = r
			prev = r.End
		}
		return ackHeaderSize + n*ackRangeSize, nil
	case frameReset:
		if len(b) < resetFrameSize {
			return 0, errFrame
		}
		f.Flags = b[1]
		if f.Flags&^resetFlagsKnown != 0 {
			return 0, errFrame
		}
		f.Stream = binary.LittleEndian.Uint32(b[2:])
		f.Code = binary.LittleEndian.Uint32(b[6:])
		return resetFrameSize, nil
	case framePing, framePong:
		if len(b) < pingFrameSize {
			return 0, errFrame
		}
		f.Token = binary.LittleEndian.Uint64(b[1:])
		return pingFrameSize, nil
	}
	return 0, errFrame
}

// appendFrame appends the encoding of f to dst. It is the inverse of
// decodeFrame for every frame decodeFrame accepts.
func appendFrame(dst []byte, f *frame) []byte {
	switch f.Type {
	case framePadding:
		return append(dst, make([]byte, f.PadLen)...)
	case frameData:
		h := dataHeaderSize
		x, y := f.FragIndex, f.FragCount
		if f.Flags&(flagUnreliable|flagSplit) != 0 {
			h = unreliableDataHeaderSize
		}
		if f.Flags&flagSplit != 0 {
			x, y = f.Offset, f.Total
		}
		o := len(dst)
		dst = append(dst, make([]byte, h)...)
		putDataHeader(dst[o:], f.Flags, f.Stream, f.Seq, len(f.Data), x, y)
		return append(dst, f.Data...)
	case frameAck:
		o := len(dst)
		dst = append(dst, make([]byte, ackHeaderSize+f.NRanges*ackRangeSize)...)
		putAck(dst[o:], f.Stream, f.Seq, f.Window, f.Ranges[:f.NRanges])
		return dst
	case frameReset:
		o := len(dst)
		dst = append(dst, make([]byte, resetFrameSize)...)
		putReset(dst[o:], f.Flags, f.Stream, f.Code)
		return dst
	case framePing, framePong:
		o := len(dst)
		dst = append(dst, make([]byte, pingFrameSize)...)
		putPing(dst[o:], f.Type, f.Token)
		return dst
	}
	return dst
}

// putDataHeader writes a DATA header into b and returns its size. b must
// hold unreliableDataHeaderSize bytes when flags has flagUnreliable or
// flagSplit, else dataHeaderSize; n is the payload length that follows.
// x and y are the index and count of an unreliable fragment, or the
// offset and total of a split part.
func putDataHeader(b []byte, flags uint8, stream uint32, seq uint64, n int, x, y uint16) int {
	b[0] = byte(frameData)
	b[1] = flags
	binary.LittleEndian.PutUint32(b[2:], stream)
	binary.LittleEndian.PutUint64(b[6:], seq)
	binary.LittleEndian.PutUint16(b[14:], uint16(n))
	if flags&(flagUnreliable|flagSplit) == 0 {
		return dataHeaderSize
	}
	binary.LittleEndian.PutUint16(b[16:], x)
	binary.LittleEndian.PutUint16(b[18:], y)
	return unreliableDataHeaderSize
}

// putAck writes an ACK frame into b and returns its size.
func putAck(b []byte, stream uint32, cum uint64, window uint32, ranges []ackRange) int {
	b[0] = byte(frameAck)
	b[1] = byte(len(ranges))
	binary.LittleEndian.PutUint32(b[2:], stream)
	binary.LittleEndian.PutUint64(b[6:], cum)
	binary.LittleEndian.PutUint32(b[14:], window)
	o := ackHeaderSize
	for _, r := range ranges {
		binary.LittleEndian.PutUint32(b[o:], r.Start)
		binary.LittleEndian.PutUint32(b[o+4:], r.End)
		o += ackRangeSize
	}
	return o
}

// putReset writes a RESET frame into b and returns its size.
func putReset(b []byte, flags uint8, stream, code uint32) int {
	b[0] = byte(frameReset)
	b[1] = flags
	binary.LittleEndian.PutUint32(b[2:], stream)
	binary.LittleEndian.PutUint32(b[6:], code)
	return resetFrameSize
}

// putPing writes a PING or PONG frame into b and returns its size.
func putPing(b []byte, t frameType, token uint64) int {
	b[0] = byte(t)
	binary.LittleEndian.PutUint64(b[1:], token)
	return pingFrameSize
}

// Refusal writes into b (at least 10 bytes) the RESET with CodeRefused
// that answers frames a peer sent to a protocol that has no Mux, and
// returns its size, or 0 when the frames do not start with a DATA frame
// (nothing to refuse). It keeps no state, so a node can refuse streams
// on a protocol it serves nothing on without building a Mux for it.
func Refusal(b, frames []byte) int {
	if len(frames) < 6 || frameType(frames[0]) != frameData || len(b) < resetFrameSize {
		return 0
	}
	key := binary.LittleEndian.Uint32(frames[2:]) // as the receiver reads it
	return putReset(b, 0, key^1, CodeRefused)
}
