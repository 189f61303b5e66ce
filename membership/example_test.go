package membership_test

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/membership"
)

// A node checks the certificate a peer presents, and stops admitting it
// once its authority revokes it.
func ExampleVerifier() {
	authority, _ := identity.Generate()
	peer, _ := identity.Generate()
	now := time.Now()
	cert, _ := identity.IssueCertificate(authority, identity.CertificateTemplate{
		NodeKey: peer.PublicKey(), Name: "gpu-1", Groups: []string{"gpu"}, NotBefore: now, NotAfter: now.Add(24 * time.Hour),
	})
	raw, _ := cert.MarshalBinary() // as it travels in the handshake

	v, _ := membership.NewVerifier([]ed25519.PublicKey{authority.PublicKey()})
	c, why := v.Check(raw, peer.PublicKey(), now)
	fmt.Println(why == membership.ReasonNone, c.InGroup("gpu"))

	r, _ := identity.IssueRevocation(authority, peer.PublicKey(), now)
	v.AddRevocation(r, now)
	_, why = v.Check(raw, peer.PublicKey(), now)
	fmt.Println(why)
	// Output:
	// true true
	// certificate revoked
}

// An issuer hands out a one-time code; the new node proves it knows it,
// bound to one handshake, and gets its certificate.
func ExampleIssuer() {
	authority, _ := identity.Generate()
	newNode, _ := identity.Generate()
	is := membership.NewIssuer(authority, membership.IssuerOptions{})
	now := time.Now()
	code, _ := is.NewPairingCode(membership.Grant{Name: "laptop", Groups: []string{"dev"}}, now)

	handshake := []byte("the hash of one handshake")
	cert, _, why := is.Redeem(code.Proof(handshake), handshake, newNode.PublicKey(), "192.0.2.7", now)
	fmt.Println(why == membership.ReasonNone, cert.Name, cert.Groups)
	_, _, why = is.Redeem(code.Proof(handshake), handshake, newNode.PublicKey(), "192.0.2.7", now)
	fmt.Println(why)
	// Output:
	// true laptop [dev]
	// pairing code already used
}
