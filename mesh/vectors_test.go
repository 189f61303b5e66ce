package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"sync"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/internal/wirevec"
	"github.com/netmesh/netmesh/mesh/stream"
	"github.com/netmesh/netmesh/mesh/wire"
	"github.com/netmesh/netmesh/noise"
)

// The datagrams of docs/WIRE.md's test vectors are the bytes this package
// makes from the vectors' Noise messages, indexes and session keys (which
// package noise checks): every message of an IK and an XX handshake with
// its header and MACs, a data packet carrying a datagram, and one
// carrying the stream frame (made by the stream engine) of an rpc call
// (whose frame package rpc checks).
func TestWireVectors(t *testing.T) {
	doc := wirevec.Load(t, "../docs/WIRE.md")
	key := func(role string) ed25519.PublicKey {
		id, err := identity.FromSeed(doc.Bytes(role + ".seed"))
		if err != nil {
			t.Fatal(err)
		}
		return id.PublicKey()
	}
	initiatorKey, responderKey := key("initiator"), key("responder")
	// The MAC1 keys the receivers check with, as the transport sets them up.
	var initiatorGuard, responderGuard floodGuard
	initiatorGuard.init(initiatorKey, defaultHandshakeRate)
	responderGuard.init(responderKey, defaultHandshakeRate)

	type message struct {
		name     string
		typ      wire.Type
		sender   string // the index vector of the sender
		receiver string // the index vector of the receiver; "" in initiations
		mac1     macKey // the key the sender uses, as the transport picks it
		check    *macKey
		suite    uint8
	}
	messages := []message{
		{"ik.msg1", wire.TypeInitIK, "ik.initiator.index", "", macKey{key: mac1Key(responderKey)}, &responderGuard.mac1Own, 0},
		{"ik.msg2", wire.TypeResponse, "ik.responder.index", "ik.initiator.index", macKey{key: mac1Key(initiatorKey)}, &initiatorGuard.mac1Own, 0},
		{"xx.msg1", wire.TypeInitXX, "xx.initiator.index", "", macKey{key: mac1Key(nil)}, &responderGuard.mac1Anon, 0},
		{"xx.msg2", wire.TypeResponse, "xx.responder.index", "xx.initiator.index", macKey{key: mac1Key(nil)}, &initiatorGuard.mac1Anon, 0},
		{"xx.msg3", wire.TypeFinal, "xx.initiator.index", "xx.responder.index", macKey{key: mac1Key(responderKey)}, &responderGuard.mac1Own, 0},
		{"aesgcm.ik.msg1", wire.TypeInitIK, "ik.initiator.index", "", macKey{key: mac1Key(responderKey)}, &responderGuard.mac1Own, wire.SuiteAESGCM},
		{"aesgcm.ik.msg2", wire.TypeResponse, "ik.responder.index", "ik.initiator.index", macKey{key: mac1Key(initiatorKey)}, &initiatorGuard.mac1Own, wire.SuiteAESGCM},
	}
	for _, m := range messages {
		h := wire.Handshake{Type: m.typ, Suite: m.suite, Sender: uint32(doc.Uint(m.sender)), Noise: doc.Bytes(m.name + ".noise")}
		if m.receiver != "" {
			h.Receiver = uint32(doc.Uint(m.receiver))
		}
		pkt := wire.AppendHandshake(nil, h)
		setMAC1(pkt, &m.mac1)
		if !validMAC1(pkt, m.check) {
			t.Errorf("%s: its receiver would refuse its MAC1", m.name)
		}
		doc.Check(m.name+".packet", pkt)
	}

	// The IK sessions, as the initiator holds them.
	sessionOf := func(suite noise.Suite, prefix string) *session {
		send, err := noise.NewCipher(suite, doc.Bytes(prefix+"ik.key.initiator_send"))
		if err != nil {
			t.Fatal(err)
		}
		return &session{send: send, suite: suite, remote: uint32(doc.Uint("ik.responder.index"))}
	}
	s := sessionOf(noise.SuiteChaChaPoly, "")
	seal := func(proto wire.Proto, head, data []byte) []byte {
		pkt := getOut(wire.DataOverhead + wire.FrameHeaderSize + len(head) + len(data))
		defer putOut(pkt)
		n, err := sealFrame(s, pkt, 0, proto, head, data)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(pkt.buf[:n])
	}
	doc.Check("datagram.packet", seal(protoDatagram.id, []byte(doc.Text("datagram.payload")), nil))
	chacha := s
	s = sessionOf(noise.SuiteAESGCM, "aesgcm.")
	doc.Check("aesgcm.datagram.packet", seal(protoDatagram.id, []byte(doc.Text("datagram.payload")), nil))
	s = chacha

	rpcProto := MustProtocol("netmesh/rpc")
	if want := doc.Uint("rpc.protocol"); uint64(rpcProto.id) != want {
		t.Errorf("netmesh/rpc is protocol %d, the vectors say %d", rpcProto.id, want)
	}
	frame := firstStreamFrame(t, doc.Bytes("rpc.request"))
	doc.Check("stream.frame", frame)
	doc.Check("rpc.packet", seal(rpcProto.id, frame, nil))
}

// firstStreamFrame returns the frame body the stream engine sends for
// msg, the one message of the first stream a node opens, sent with the
// end of its side (as an rpc client sends a unary request).
func firstStreamFrame(t *testing.T, msg []byte) []byte {
	t.Helper()
	link := &captureLink{sent: make(chan []byte, 1)}
	mux := stream.NewMux(link, stream.MuxConfig{})
	defer mux.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := mux.Open(ctx, stream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendAndClose(ctx, msg); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-link.sent:
		return b
	case <-ctx.Done():
		t.Fatal("the stream engine sent no frame")
		return nil
	}
}

// captureLink is a stream.Link that keeps the first frame body sent on it
// and drops the rest.
type captureLink struct {
	once sync.Once
	sent chan []byte
}

func (l *captureLink) SendFrame(head, data []byte) error {
	l.once.Do(func() { l.sent <- append(bytes.Clone(head), data...) })
	return nil
}

func (l *captureLink) MaxFrameSize() int { return MaxDatagramSize }
