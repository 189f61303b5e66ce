package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
)

func TestMembershipConfig(t *testing.T) {
	ca, _ := identity.Generate()
	key := hex.EncodeToString(ca.PublicKey())
	rc, err := fileConfig{KeyFile: "/etc/netnode/node.key"}.validate(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := rc.member; s.certFile != "/etc/netnode/node.cert" || s.revocationsFile != "/etc/netnode/node.revocations" || !s.renew || s.open {
		t.Fatalf("defaults %+v", s)
	}
	rc, err = fileConfig{KeyFile: "k", Membership: &membershipSpec{Authorities: []string{key}, PairWith: "192.0.2.1:7946", PairCode: strings.Repeat("a", 32)}}.validate(io.Discard)
	if err != nil || len(rc.member.authorities) != 1 || rc.member.pairWith == nil {
		t.Fatalf("%+v %v", rc.member, err)
	}
	for _, c := range []struct {
		ms   membershipSpec
		want string
	}{
		{membershipSpec{Authorities: []string{"00"}}, "membership.authorities[0]"},
		{membershipSpec{Open: true, Authorities: []string{key}}, "membership.open"},
		{membershipSpec{PairWith: "192.0.2.1:7946"}, "go together"},
		{membershipSpec{PairWith: "192.0.2.1:7946", PairCode: "short"}, "membership.pair_code"},
		{membershipSpec{PairWith: "id=aaaaaaaaaaaaaaaaaaaaaaaaaa", PairCode: strings.Repeat("a", 32)}, "membership.pair_with"},
	} {
		_, err := fileConfig{KeyFile: "k", Membership: &c.ms}.validate(io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %s", c.ms, err, c.want)
		}
	}
}

// TestKeeper: a node takes a new certificate file without a restart, and
// keeps what it learns (revocations, an online renewal) in its files.
func TestKeeper(t *testing.T) {
	defer func(d time.Duration) { certReload = d }(certReload)
	certReload = 20 * time.Millisecond
	dir := t.TempDir()
	ca, _ := identity.Generate()
	id, _ := identity.Generate()
	issue := func(group string) *identity.Certificate {
		c, err := identity.IssueCertificate(ca, identity.CertificateTemplate{NodeKey: id.PublicKey(), Name: "n", Groups: []string{group}, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	s := &memberSettings{certFile: filepath.Join(dir, "n.cert"), revocationsFile: filepath.Join(dir, "n.revocations")}
	if err := identity.SaveCertificate(s.certFile, issue("first")); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	mc, err := s.meshConfig(context.Background(), id, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(mc.Authorities) != 1 || !ed25519.PublicKey(mc.Authorities[0]).Equal(ca.PublicKey()) {
		t.Fatalf("a node with a certificate trusts %v, want its authority", mc.Authorities)
	}
	k := newMemberFiles(&mc)
	m, err := mesh.New(mesh.Config{Identity: id, ListenAddr: "127.0.0.1:0", Membership: mc})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.run(ctx, m, s, log); close(done) }()
	defer func() { cancel(); <-done }()

	// A new file is taken without a restart (its size differs, whatever
	// the clock's resolution makes of its modification time).
	if err := identity.SaveCertificate(s.certFile, issue("second")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return m.Certificate().InGroup("second") })

	// A revocation is kept in the file.
	other, _ := identity.Generate()
	r, _ := identity.IssueRevocation(ca, other.PublicKey(), time.Now())
	if err := m.AddRevocation(r); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		rs, err := identity.LoadRevocations(s.revocationsFile)
		return err == nil && len(rs) == 1
	})
	// An online renewal is written to the certificate file.
	mc.OnCertificate(issue("renewed"))
	waitUntil(t, func() bool {
		c, err := identity.LoadCertificate(s.certFile)
		return err == nil && c.InGroup("renewed")
	})
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
