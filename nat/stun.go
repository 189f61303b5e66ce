//go:build nat

package nat

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// stunQuery sends STUN Binding requests to server from the node's socket,
// retransmitting every stunRetransmit, until a response arrives (through
// HandleSTUN) or ctx ends. It returns the XOR-mapped address.
func (e *Engine) stunQuery(ctx context.Context, server netip.AddrPort) (netip.AddrPort, error) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, &Error{Kind: KindTransport, Err: err}
	}
	ch := make(chan netip.AddrPort, 1)
	e.mu.Lock()
	e.stunTx[req.TransactionID] = stunWait{dst: server, ch: ch}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.stunTx, req.TransactionID)
		e.mu.Unlock()
	}()
	t := time.NewTicker(stunRetransmit)
	defer t.Stop()
	for {
		e.st.queries.Add(1)
		if err := e.tr.SendRaw(server, req.Raw); err != nil {
			return netip.AddrPort{}, &Error{Kind: KindTransport, Reason: "STUN request to " + server.String(), Err: err}
		}
		select {
		case a := <-ch:
			return a, nil
		case <-t.C:
		case <-ctx.Done():
			return netip.AddrPort{}, &Error{Kind: KindReflexTimeout, Reason: "STUN server " + server.String(), Err: ctx.Err()}
		}
	}
}

// HandleSTUN handles a STUN message that arrived on the node's socket from
// from. The node calls it on its receive path; it never blocks. Only a
// Binding success response to a request in flight, from the server it was
// sent to, counts.
func (e *Engine) HandleSTUN(b []byte, from netip.AddrPort) {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
		return
	}
	e.mu.Lock()
	w, ok := e.stunTx[m.TransactionID]
	e.mu.Unlock()
	if !ok || w.dst != netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) {
		return
	}
	var ip net.IP
	var port int
	var xor stun.XORMappedAddress
	if xor.GetFrom(m) == nil {
		ip, port = xor.IP, xor.Port
	} else {
		var plain stun.MappedAddress
		if plain.GetFrom(m) != nil {
			return
		}
		ip, port = plain.IP, plain.Port
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 0xffff {
		return
	}
	e.st.answers.Add(1)
	select {
	case w.ch <- netip.AddrPortFrom(addr.Unmap(), uint16(port)):
	default:
	}
}
