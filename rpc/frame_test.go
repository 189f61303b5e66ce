package rpc_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/rpc"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []rpc.Frame{
		{Type: rpc.FrameRequest, Service: "echo", Body: []byte("hi")},
		{Type: rpc.FrameRequest, Stream: true, Credit: 16, Timeout: 1500 * time.Millisecond, Service: strings.Repeat("a", rpc.MaxServiceLen), Body: []byte{}},
		{Type: rpc.FrameCredit, Credit: 1 << 31},
		{Type: rpc.FrameResponse, Body: []byte{}},
		{Type: rpc.FrameChunk, Body: []byte{1, 2, 3}},
		{Type: rpc.FrameEnd},
		{Type: rpc.FrameError, Status: rpc.StatusHandlerError, Message: "boom ✗"},
		{Type: rpc.FrameError, Status: 0xFFFF},
	} {
		b := rpc.AppendFrame(nil, &f)
		got, err := rpc.ParseFrame(b)
		if err != nil {
			t.Fatalf("%+v: %v", f, err)
		}
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, f)
		}
		if again := rpc.AppendFrame(nil, &got); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs: %x vs %x", again, b)
		}
	}
	// A timeout is sent in whole milliseconds, rounded up.
	b := rpc.AppendFrame(nil, &rpc.Frame{Type: rpc.FrameRequest, Service: "x1", Timeout: 1500 * time.Microsecond})
	if f, _ := rpc.ParseFrame(b); f.Timeout != 2*time.Millisecond {
		t.Fatalf("timeout %v", f.Timeout)
	}
	if len(b) != 13 {
		t.Fatalf("a request for a 2-byte service with no body is %d bytes", len(b))
	}
}

func TestParseFrameRejects(t *testing.T) {
	req := func(flags byte, credit byte, svc string) []byte {
		return append([]byte{byte(rpc.FrameRequest), flags, 0, 0, 0, 0, credit, 0, 0, 0, byte(len(svc))}, svc...)
	}
	for name, b := range map[string][]byte{
		"empty":             nil,
		"unknown type":      {0x7f},
		"short request":     req(0, 0, "ab")[:10],
		"unknown flag":      req(2, 0, "ab"),
		"unary credit":      req(0, 1, "ab"),
		"empty service":     req(0, 0, ""),
		"service too long":  req(0, 0, strings.Repeat("a", rpc.MaxServiceLen+1)),
		"service alphabet":  req(0, 0, "Echo"),
		"service truncated": req(0, 0, "abc")[:12],
		"credit short":      {byte(rpc.FrameCredit), 1, 0, 0},
		"credit long":       {byte(rpc.FrameCredit), 1, 0, 0, 0, 0},
		"zero credit":       {byte(rpc.FrameCredit), 0, 0, 0, 0},
		"end with bytes":    {byte(rpc.FrameEnd), 0},
		"error short":       {byte(rpc.FrameError), 1},
		"error status 0":    {byte(rpc.FrameError), 0, 0},
		"error not utf-8":   {byte(rpc.FrameError), 1, 0, 0xff},
		"error too long":    append([]byte{byte(rpc.FrameError), 1, 0}, strings.Repeat("x", rpc.MaxErrorMessage+1)...),
	} {
		if _, err := rpc.ParseFrame(b); !errors.Is(err, rpc.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestValidService(t *testing.T) {
	for _, ok := range []string{"echo", "a", "svc/v2", "gpu:infer-1.b_c"} {
		if err := rpc.ValidService(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Echo", "with space", "é", strings.Repeat("a", rpc.MaxServiceLen+1)} {
		if err := rpc.ValidService(bad); !errors.Is(err, rpc.ErrInvalidService) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestErrorText(t *testing.T) {
	e := &rpc.Error{Kind: rpc.KindServer, Service: "add", Status: rpc.StatusBadRequest, Message: "decode"}
	if got := e.Error(); got != "rpc add: server error 32768 (bad request): decode" {
		t.Fatalf("%q", got)
	}
	if got := rpc.Status(0x9001).String(); got != "status 0x9001" {
		t.Fatalf("%q", got)
	}
	for k := rpc.KindNoRoute; k <= rpc.KindCircuitOpen; k++ {
		if strings.HasPrefix(k.String(), "kind ") {
			t.Errorf("kind %d has no name", k)
		}
	}
}
