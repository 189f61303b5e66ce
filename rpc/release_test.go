package rpc_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/rpc"
)

// TestConcurrentCallsKeepTheirReplies runs unary calls from many
// goroutines at once, of many sizes, some answered with an error, some
// abandoned by their callers mid-call, so that the streams callers
// release after their replies are reused while other calls' streams end
// in every way. A stream handed to a new call while any goroutine or Mux
// queue still used it would show here as a reply that is not the one its
// request asked for, a call that fails without reason, or (under -race) a
// data race.
func TestConcurrentCallsKeepTheirReplies(t *testing.T) {
	s := newSetup(t, rpc.ServerOptions{}, rpc.ClientOptions{})
	// The reply is the request reversed, so no reply can pass for
	// another request's; "fail" answers with an error naming the request.
	reverse := func(_ context.Context, req []byte) ([]byte, error) {
		out := make([]byte, len(req))
		for i, b := range req {
			out[len(req)-1-i] = b
		}
		return out, nil
	}
	fail := func(_ context.Context, req []byte) ([]byte, error) {
		return nil, fmt.Errorf("refused %x", req[:8])
	}
	slow := func(ctx context.Context, req []byte) ([]byte, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(req[0]%4) * time.Millisecond):
		}
		return reverse(ctx, req)
	}
	for name, h := range map[string]rpc.Handler{"reverse": reverse, "fail": fail, "slow": slow} {
		if err := s.srv.Handle(name, h); err != nil {
			t.Fatal(err)
		}
	}
	callers, calls := 16, 150
	if raceEnabled {
		calls = 40
	}
	node := s.sm.ID()
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for i := range calls {
				n := 8 + rng.IntN(3000) // one fragment to three
				req := make([]byte, n)
				binary.BigEndian.PutUint32(req, uint32(g))
				binary.BigEndian.PutUint32(req[4:], uint32(i))
				for j := 8; j < n; j++ {
					req[j] = byte(rng.Uint32())
				}
				if err := oneCall(s.c, node, rng.IntN(10), req); err != nil {
					errs <- fmt.Errorf("caller %d, call %d (%d bytes): %w", g, i, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// oneCall makes one call of the kind k picks (0-5 a reply, 6-7 an error,
// 8-9 a call its caller gives up on) and checks its outcome.
func oneCall(c *rpc.Client, node identity.NodeID, k int, req []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch {
	case k < 6:
		resp, err := c.Call(ctx, node, "reverse", req)
		if err != nil {
			return err
		}
		if len(resp) != len(req) {
			return fmt.Errorf("a %d-byte reply", len(resp))
		}
		for i := range req {
			if resp[len(resp)-1-i] != req[i] {
				return fmt.Errorf("reply byte %d is not its request's", len(resp)-1-i)
			}
		}
	case k < 8:
		_, err := c.Call(ctx, node, "fail", req)
		var re *rpc.Error
		if !errors.As(err, &re) || re.Kind != rpc.KindServer || re.Message != fmt.Sprintf("refused %x", req[:8]) {
			return fmt.Errorf("want the server's refusal of this request, got %v", err)
		}
	default:
		short, stop := context.WithTimeout(ctx, time.Duration(req[1]%3)*time.Millisecond)
		defer stop()
		resp, err := c.Call(short, node, "slow", req)
		var re *rpc.Error
		switch {
		case err == nil && len(resp) != len(req):
			return fmt.Errorf("a %d-byte reply to an abandoned call", len(resp))
		case err != nil && (!errors.As(err, &re) || (re.Kind != rpc.KindTimeout && re.Kind != rpc.KindCancelled)):
			return fmt.Errorf("an abandoned call failed with %v", err)
		}
	}
	return nil
}
