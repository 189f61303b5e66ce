package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestClosedMeshEndToEnd runs a closed mesh with netnode: an offline
// authority (ca init, ca sign, cert show), a node that holds the
// authority key and pairs a new machine (pair code, pair, including a
// reused and a wrong code, and pairing from the config at start), a
// stranger that is refused, and revocation both online (revoke KEY) and
// offline (ca revoke, revoke --file), kept in the members' files.
func TestClosedMeshEndToEnd(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }

	out := mustRun(t, "ca", "init", "-k", path("ca.key"))
	authority := regexp.MustCompile(`authority key  ([0-9a-f]{64})`).FindStringSubmatch(out)
	if authority == nil {
		t.Fatalf("ca init printed %q", out)
	}
	if fi, err := os.Stat(path("ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("authority key file: %v %v", fi.Mode(), err)
	}

	// The issuer: a node that holds the authority key.
	ki := newKey(t, path("issuer.key"))
	issuer := startNode(t, dir, "issuer", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
[membership]
authority_key = %q
`, ki.KeyFile, path("ca.key")))
	addrI := issuer.status(t).ListenAddrs[0]
	var mi membershipInfo
	mustJSON(t, &mi, "cert", "show", "--node", "--json", "--control", issuer.control)
	if !mi.Closed || !mi.Issuer || mi.Certificate == nil || mi.Certificate.Authority != authority[1] {
		t.Fatalf("issuer's membership: %+v", mi)
	}

	// A member with a certificate signed offline.
	km := newKey(t, path("m.key"))
	mustRun(t, "ca", "sign", "-k", path("ca.key"), "--name", "member-1", "--groups", "ops,gpu", "--valid-for", "24h", km.KeyFile)
	out = mustRun(t, "cert", "show", "-k", km.KeyFile)
	for _, want := range []string{"member-1", "gpu, ops", authority[1], "valid"} {
		if !strings.Contains(out, want) {
			t.Errorf("cert show does not say %q:\n%s", want, out)
		}
	}
	member := startNode(t, dir, "m", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
peers = ["%s,key=%s"]
[membership]
authorities = [%q]
`, km.KeyFile, addrI, ki.PublicKey, authority[1]))
	addrM := member.status(t).ListenAddrs[0]
	waitFor(t, 10*time.Second, "the member up with the issuer", func() bool { return member.peers(t)[ki.NodeID].Up })

	// Pairing a new machine: code, pair, then the node runs as a member.
	code := func() string {
		var res pairCodeResult
		mustJSON(t, &res, "pair", "code", "--json", "--control", issuer.control, "--name", "laptop", "--groups", "dev", "--ttl", "5m")
		return res.Code
	}
	kn := newKey(t, path("n.key"))
	c1 := code()
	with := fmt.Sprintf("%s,id=%s", addrI, ki.NodeID)
	out = mustRun(t, "pair", "-k", kn.KeyFile, "--with", with, "--code", c1)
	if !strings.Contains(out, "laptop") || !strings.Contains(out, path("n.cert")) {
		t.Fatalf("pair printed:\n%s", out)
	}
	other := newKey(t, path("o.key"))
	r := netnode(t, "pair", "-k", other.KeyFile, "--with", with, "--code", c1)
	oneLineError(t, r, exitFailure, "pairing code already used")
	r = netnode(t, "pair", "-k", other.KeyFile, "--with", with, "--code", "aaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaa")
	oneLineError(t, r, exitFailure, "wrong pairing code")
	if _, err := os.Stat(path("o.cert")); !os.IsNotExist(err) {
		t.Fatalf("a refused pairing wrote a certificate: %v", err)
	}
	startNode(t, dir, "n", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
peers = ["%s,key=%s"]
`, kn.KeyFile, addrM, km.PublicKey))
	waitFor(t, 10*time.Second, "the paired node up with the member", func() bool { return member.peers(t)[kn.NodeID].Up })

	// Pairing from the config at start.
	kp := newKey(t, path("p.key"))
	startNode(t, dir, "p", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
peers = ["%s,key=%s"]
[membership]
pair_with = %q
pair_code = %q
`, kp.KeyFile, addrM, km.PublicKey, with, code()))
	waitFor(t, 10*time.Second, "the node paired at start up with the member", func() bool { return member.peers(t)[kp.NodeID].Up })
	if _, err := os.Stat(path("p.cert")); err != nil {
		t.Fatal(err)
	}

	// A stranger is refused, and the member counts why.
	ks := newKey(t, path("s.key"))
	startNode(t, dir, "s", fmt.Sprintf(`
key_file = %q
listen = "127.0.0.1:0"
peers = ["%s,key=%s"]
`, ks.KeyFile, addrM, km.PublicKey))
	waitFor(t, 10*time.Second, "the member to refuse the stranger", func() bool { return member.status(t).Drops["no_certificate"] > 0 })
	if member.peers(t)[ks.NodeID].Up {
		t.Fatal("a stranger joined the closed mesh")
	}

	// Online revocation by the issuer reaches the member, which drops the
	// node and keeps the revocation.
	out = mustRun(t, "revoke", "--control", issuer.control, kn.PublicKey)
	if !strings.Contains(out, "revoked node="+kn.NodeID[:8]) {
		t.Fatalf("revoke printed %q", out)
	}
	waitFor(t, 10*time.Second, "the member to drop the revoked node", func() bool { return !member.peers(t)[kn.NodeID].Up })
	waitFor(t, 10*time.Second, "the member to keep the revocation", func() bool {
		b, err := os.ReadFile(path("m.revocations"))
		return err == nil && strings.Count(string(b), "BEGIN NETMESH REVOCATION") == 1
	})

	// Offline revocation handed to a member.
	mustRun(t, "ca", "revoke", "-k", path("ca.key"), kp.PublicKey, "-o", path("p.revoked"))
	out = mustRun(t, "revoke", "--control", member.control, "--file", path("p.revoked"))
	if !strings.Contains(out, "revoked node="+kp.NodeID[:8]) {
		t.Fatalf("revoke --file printed %q", out)
	}
	waitFor(t, 10*time.Second, "the member to drop the node revoked offline", func() bool { return !member.peers(t)[kp.NodeID].Up })
	mustJSON(t, &mi, "cert", "show", "--node", "--json", "--control", issuer.control)
	if mi.Revocations != 2 {
		t.Fatalf("the issuer holds %d revocations, want both", mi.Revocations)
	}

	// Bad input is the caller's fault.
	r = netnode(t, "revoke", "--control", member.control, ki.PublicKey)
	oneLineError(t, r, exitFailure, "holds no authority key")
	r = netnode(t, "ca", "sign", "-k", path("ca.key"), "--name", "Bad Name", km.PublicKey)
	oneLineError(t, r, exitUsage, "name")
}
