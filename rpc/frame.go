package rpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/netmesh/netmesh/capability"
)

// FrameType is the first byte of every rpc message. docs/RPC.md describes
// each frame byte by byte.
type FrameType uint8

// Frame types. Requests and credit go from caller to server; the others
// from server to caller.
const (
	// FrameRequest opens a call: flags, timeout, initial credit, service
	// and request body.
	FrameRequest FrameType = 0x01
	// FrameCredit grants the server more stream chunks.
	FrameCredit FrameType = 0x02
	// FrameResponse ends a unary call successfully and carries the reply.
	FrameResponse FrameType = 0x10
	// FrameChunk carries one response of a streaming call.
	FrameChunk FrameType = 0x11
	// FrameEnd ends a streaming call successfully.
	FrameEnd FrameType = 0x12
	// FrameError ends a call with a status and a message.
	FrameError FrameType = 0x13
)

// FlagStream in a request says the caller reads a stream of chunks.
const FlagStream uint8 = 0x01

// Sizes of the wire format.
const (
	// TagPrefix prefixes a service name to make its capability tag.
	TagPrefix = "rpc:"
	// MaxServiceLen is the longest service name: the tag "rpc:<service>"
	// must fit capability.MaxTagLen.
	MaxServiceLen = capability.MaxTagLen - len(TagPrefix)
	// MaxErrorMessage bounds an error frame's message in bytes; servers
	// truncate longer ones.
	MaxErrorMessage = 1024
	// requestHeaderSize is type, flags, timeout u32, credit u32, service
	// length u8.
	requestHeaderSize = 11
	// creditSize is type and count u32.
	creditSize = 5
	// errorHeaderSize is type and status u16.
	errorHeaderSize = 3
	// maxTimeoutMS is the largest timeout a request carries (49.7 days).
	maxTimeoutMS = math.MaxUint32
)

var (
	// ErrMalformed reports bytes that are not a well-formed rpc frame.
	ErrMalformed = errors.New("rpc: malformed frame")
	// ErrInvalidService reports a service name that is empty, longer than
	// MaxServiceLen, or uses characters outside a-z, 0-9 and "-:._/".
	ErrInvalidService = errors.New("rpc: invalid service name")
)

// Frame is one decoded rpc message. Which fields mean something depends on
// Type; the others are zero.
type Frame struct {
	Type FrameType

	// Stream (request): the caller reads a stream of chunks.
	Stream bool
	// Timeout (request): the caller's remaining time, whole milliseconds;
	// 0 means no deadline.
	Timeout time.Duration
	// Credit (request, stream only; credit frame): chunks the server may
	// send beyond those already granted. A credit frame grants at least 1.
	Credit uint32
	// Service (request): the service called.
	Service string

	// Status and Message (error frame): why the call failed.
	Status  Status
	Message string

	// Body (request, response, chunk): the payload. ParseFrame returns a
	// slice of its input.
	Body []byte
}

// ValidService reports whether name can name a service: 1 to MaxServiceLen
// bytes of lowercase letters, digits and "-:._/" (the capability tag
// alphabet), so that "rpc:<name>" is a valid tag.
func ValidService(name string) error { return validService(name) }

func validService[T ~string | ~[]byte](name T) error {
	if len(name) == 0 || len(name) > MaxServiceLen {
		return fmt.Errorf("%w: %q is not 1 to %d bytes", ErrInvalidService, name, MaxServiceLen)
	}
	for i := 0; i < len(name); i++ {
		if !serviceByte(name[i]) {
			return fmt.Errorf("%w: %q has byte %q at %d", ErrInvalidService, name, name[i], i)
		}
	}
	return nil
}

func serviceByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == ':' || c == '.' || c == '_' || c == '/'
}

// AppendFrame appends the encoding of f to dst. f must be valid (as
// ParseFrame returns it); fields that do not fit (a service longer than
// MaxServiceLen, a timeout beyond 2^32-1 ms) encode to bytes ParseFrame
// rejects or are clamped: package rpc validates before encoding. A request
// timeout is rounded up to whole milliseconds.
func AppendFrame(dst []byte, f *Frame) []byte {
	dst = append(dst, byte(f.Type))
	switch f.Type {
	case FrameRequest:
		var flags uint8
		if f.Stream {
			flags |= FlagStream
		}
		ms := (f.Timeout + time.Millisecond - 1) / time.Millisecond
		if f.Timeout <= 0 {
			ms = 0
		}
		ms = min(ms, maxTimeoutMS)
		dst = append(dst, flags)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(ms))
		dst = binary.LittleEndian.AppendUint32(dst, f.Credit)
		dst = append(dst, byte(len(f.Service)))
		dst = append(dst, f.Service...)
		dst = append(dst, f.Body...)
	case FrameCredit:
		dst = binary.LittleEndian.AppendUint32(dst, f.Credit)
	case FrameResponse, FrameChunk:
		dst = append(dst, f.Body...)
	case FrameError:
		dst = binary.LittleEndian.AppendUint16(dst, uint16(f.Status))
		dst = append(dst, f.Message...)
	}
	return dst
}

// ParseFrame decodes one rpc message. It accepts only canonical encodings
// (ParseFrame then AppendFrame gives back the input), returns an error
// wrapping ErrMalformed for anything else, and never panics. Body aliases b.
func ParseFrame(b []byte) (Frame, error) {
	f, service, err := parseFrame(b)
	if err != nil {
		return Frame{}, err
	}
	if f.Type == FrameRequest {
		f.Service = string(service)
	}
	return f, nil
}

// parseFrame is ParseFrame without the copy of a request's service name:
// it returns the name as a slice of b and leaves f.Service empty.
func parseFrame(b []byte) (f Frame, service []byte, err error) {
	if len(b) == 0 {
		return Frame{}, nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	f = Frame{Type: FrameType(b[0])}
	switch f.Type {
	case FrameRequest:
		if len(b) < requestHeaderSize {
			return Frame{}, nil, fmt.Errorf("%w: request of %d bytes", ErrMalformed, len(b))
		}
		flags := b[1]
		if flags&^FlagStream != 0 {
			return Frame{}, nil, fmt.Errorf("%w: request flags %#x", ErrMalformed, flags)
		}
		f.Stream = flags&FlagStream != 0
		f.Timeout = time.Duration(binary.LittleEndian.Uint32(b[2:])) * time.Millisecond
		f.Credit = binary.LittleEndian.Uint32(b[6:])
		if !f.Stream && f.Credit != 0 {
			return Frame{}, nil, fmt.Errorf("%w: credit in a unary request", ErrMalformed)
		}
		n := int(b[10])
		if len(b) < requestHeaderSize+n {
			return Frame{}, nil, fmt.Errorf("%w: service of %d bytes in %d", ErrMalformed, n, len(b))
		}
		service = b[requestHeaderSize : requestHeaderSize+n]
		if err := validService(service); err != nil {
			return Frame{}, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		f.Body = b[requestHeaderSize+n:]
	case FrameCredit:
		if len(b) != creditSize {
			return Frame{}, nil, fmt.Errorf("%w: credit of %d bytes", ErrMalformed, len(b))
		}
		f.Credit = binary.LittleEndian.Uint32(b[1:])
		if f.Credit == 0 {
			return Frame{}, nil, fmt.Errorf("%w: zero credit", ErrMalformed)
		}
	case FrameResponse, FrameChunk:
		f.Body = b[1:]
	case FrameEnd:
		if len(b) != 1 {
			return Frame{}, nil, fmt.Errorf("%w: end of %d bytes", ErrMalformed, len(b))
		}
	case FrameError:
		if len(b) < errorHeaderSize {
			return Frame{}, nil, fmt.Errorf("%w: error of %d bytes", ErrMalformed, len(b))
		}
		f.Status = Status(binary.LittleEndian.Uint16(b[1:]))
		msg := b[errorHeaderSize:]
		switch {
		case f.Status == StatusOK:
			return Frame{}, nil, fmt.Errorf("%w: error with status 0", ErrMalformed)
		case len(msg) > MaxErrorMessage:
			return Frame{}, nil, fmt.Errorf("%w: error message of %d bytes", ErrMalformed, len(msg))
		case !utf8.Valid(msg):
			return Frame{}, nil, fmt.Errorf("%w: error message is not UTF-8", ErrMalformed)
		}
		f.Message = string(msg)
	default:
		return Frame{}, nil, fmt.Errorf("%w: type %#x", ErrMalformed, b[0])
	}
	return f, service, nil
}

// frameBufs holds the buffers calls encode the frames they send into.
// Stream.Send copies the message, so a buffer is free again once the send
// returned.
var frameBufs = sync.Pool{New: func() any { return new([]byte) }}

// getFrameBuf returns an empty buffer from frameBufs; give it back with
// putFrameBuf once nothing refers to it.
func getFrameBuf() *[]byte {
	b := frameBufs.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// putFrameBuf returns b to frameBufs, unless it grew beyond
// maxPooledFrame.
func putFrameBuf(b *[]byte) {
	if cap(*b) <= maxPooledFrame {
		frameBufs.Put(b)
	}
}
