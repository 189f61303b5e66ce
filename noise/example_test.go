package noise_test

import (
	"fmt"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/noise"
)

// An IK handshake between a node and a peer whose key it knows, then one
// transport packet through the replay window.
func Example() {
	alice, _ := identity.Generate()
	bob, _ := identity.Generate()

	ini, _ := noise.NewInitiator(noise.Config{Identity: alice, PeerKey: bob.PublicKey()}, time.Now())
	res, _ := noise.NewResponder(bob, noise.PatternIK, noise.PreferredSuite(), 0)

	initiation, _ := ini.WriteMessage(nil)
	if err := res.ReadMessage(initiation); err != nil {
		panic(err)
	}
	// Here the mesh drops the initiation if res.Peer().InitiationTime is
	// not newer than the last one from res.Peer().ID.
	response, _ := res.WriteMessage(nil)
	if err := ini.ReadMessage(response); err != nil {
		panic(err)
	}
	ak, _ := ini.Keys()
	bk, _ := res.Keys()
	fmt.Println(ak.Peer.ID == bob.NodeID(), bk.Peer.ID == alice.NodeID())

	// Transport: seal in place with an explicit counter; the receiver checks
	// the replay window, opens, then marks the counter.
	type packet struct {
		nonce noise.Nonce
		buf   [1500]byte
	}
	p := new(packet)
	n := copy(p.buf[:], "hello")
	sealed := ak.Send.Seal(p.buf[:0], &p.nonce, 0, p.buf[:n], nil)

	var window noise.ReplayWindow
	if window.Check(0) {
		plain, err := bk.Recv.Open(sealed[:0], &p.nonce, 0, sealed, nil)
		fmt.Println(string(plain), err, window.Accept(0))
	}
	fmt.Println("replay accepted:", window.Check(0))
	// Output:
	// true true
	// hello <nil> true
	// replay accepted: false
}
