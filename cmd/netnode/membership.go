package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/netmesh/netmesh/dialaddr"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/membership"
	"github.com/netmesh/netmesh/mesh"
)

// Membership in netnode: the [membership] section, the files kept next
// to the key (the certificate and the revocations the node learned), the
// pairing at start, the certificate file watched for a renewal, and the
// control methods of pair code, revoke and cert show. docs/OPERATIONS.md
// is the operator's guide.

// membershipSpec is the [membership] section.
type membershipSpec struct {
	// Authorities are the trusted authority keys (hex). Default: the
	// authority of this node's certificate, if it has one.
	Authorities []string `toml:"authorities"`
	// CertFile is this node's certificate. Default: next to the key
	// file (node.key: node.cert).
	CertFile string `toml:"cert_file"`
	// RevocationsFile keeps the revocations the node learned across
	// restarts. Default: next to the key file (node.revocations).
	RevocationsFile string `toml:"revocations_file"`
	// AuthorityKey is an authority key file this node holds: it then
	// pairs new nodes, renews certificates and signs revocations.
	AuthorityKey string `toml:"authority_key"`
	// Open keeps the mesh open although the node has a certificate (to
	// close a running mesh in steps).
	Open bool `toml:"open"`
	// Renew: ask the issuer for a new certificate when two thirds of
	// the current one have passed. Default true.
	Renew *bool `toml:"renew"`
	// PairWith and PairCode pair the node at start when it has no
	// certificate yet.
	PairWith string `toml:"pair_with"`
	PairCode string `toml:"pair_code"`
}

// memberSettings is the validated [membership] section.
type memberSettings struct {
	certFile, revocationsFile string
	authorities               []ed25519.PublicKey
	authorityKey              string
	open, renew               bool
	pairWith                  *dialaddr.Addr
	pairCode                  membership.Code

	// loaded is the certificate file as meshConfig read it: memberFiles
	// takes any later change.
	loaded []byte
}

// certReload is how often the node looks for a new certificate file:
// renewal starts with a third of a certificate's validity left, so a new
// file is noticed long before the old certificate expires.
var certReload = 10 * time.Second

// filesBeside returns the default certificate and revocations files of
// the key file keyFile: its name without ".key", plus ".cert" and
// ".revocations".
func filesBeside(keyFile string) (cert, revocations string) {
	base := strings.TrimSuffix(keyFile, ".key")
	return base + ".cert", base + ".revocations"
}

// validateMembership checks the [membership] section into rc.
func (fc fileConfig) validateMembership(rc *runConfig) error {
	ms := fc.Membership
	if ms == nil {
		ms = &membershipSpec{}
	}
	s := &rc.member
	s.certFile, s.revocationsFile = filesBeside(rc.keyFile)
	if ms.CertFile != "" {
		s.certFile = ms.CertFile
	}
	if ms.RevocationsFile != "" {
		s.revocationsFile = ms.RevocationsFile
	}
	s.authorityKey, s.open = ms.AuthorityKey, ms.Open
	s.renew = ms.Renew == nil || *ms.Renew
	for i, a := range ms.Authorities {
		k, err := parsePublicKey(a)
		if err != nil {
			return fmt.Errorf("membership.authorities[%d]: %w", i, err)
		}
		s.authorities = append(s.authorities, k)
	}
	if len(s.authorities) > membership.MaxAuthorities {
		return fmt.Errorf("membership.authorities: %d keys, at most %d", len(s.authorities), membership.MaxAuthorities)
	}
	if s.open && (len(s.authorities) > 0 || s.authorityKey != "") {
		return errors.New("membership.open: an open node trusts no authority and holds none; remove authorities and authority_key, or open")
	}
	if (ms.PairWith == "") != (ms.PairCode == "") {
		return errors.New("membership: pair_with and pair_code go together")
	}
	if ms.PairWith != "" {
		da, err := dialaddr.Parse(ms.PairWith)
		if err != nil || da.Host == "" {
			return fmt.Errorf("membership.pair_with %q: want HOST:PORT[,id=NODEID]", ms.PairWith)
		}
		if s.pairCode, err = membership.ParseCode(ms.PairCode); err != nil {
			return fmt.Errorf("membership.pair_code: %w", err)
		}
		s.pairWith = &da
	}
	return nil
}

// meshConfig loads the files of s and returns the node's membership,
// pairing first if the node has no certificate and pairing is configured.
func (s *memberSettings) meshConfig(ctx context.Context, id *identity.Identity, log *slog.Logger) (mesh.MembershipConfig, error) {
	var mc mesh.MembershipConfig
	s.loaded, _ = readCertFile(s.certFile)
	cert, err := identity.LoadCertificate(s.certFile)
	switch {
	case errors.Is(err, fs.ErrNotExist) && s.pairWith != nil:
		if cert, err = pairAndSave(ctx, id, *s.pairWith, s.pairCode, s.certFile, log); err != nil {
			return mc, err
		}
		s.loaded, _ = readCertFile(s.certFile)
	case errors.Is(err, fs.ErrNotExist):
		cert = nil
	case err != nil:
		return mc, usageError{fmt.Errorf("membership: %w", err)}
	}
	if cert != nil && !bytes.Equal(cert.NodeKey, id.PublicKey()) {
		return mc, usageError{fmt.Errorf("membership: %s is a certificate for another key (node %s)", s.certFile, identity.NodeIDFromKey(cert.NodeKey))}
	}
	mc.Certificate = cert
	mc.DisableRenewal = !s.renew
	if !s.open {
		mc.Authorities = s.authorities
		if len(mc.Authorities) == 0 && cert != nil {
			mc.Authorities = []ed25519.PublicKey{cert.Authority}
		}
	}
	if s.authorityKey != "" {
		if mc.Authority, err = loadKey(s.authorityKey); err != nil {
			return mc, usageError{fmt.Errorf("membership.authority_key: %w", err)}
		}
	}
	if mc.Revocations, err = identity.LoadRevocations(s.revocationsFile); err != nil {
		return mc, fmt.Errorf("membership: %w", err)
	}
	if len(mc.Authorities) > 0 && cert == nil && mc.Authority == nil {
		log.Warn("membership: the mesh is closed but this node has no certificate; members will refuse it", "cert_file", s.certFile)
	}
	return mc, nil
}

// readCertFile reads at most 8 KiB of a certificate file (one is under
// 1 KiB; a larger file is refused when it is parsed).
func readCertFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 8<<10))
}

// pairAndSave pairs id with the node at with (see mesh.Pair) from a
// mesh of its own, and keeps the certificate in certFile.
func pairAndSave(ctx context.Context, id *identity.Identity, with dialaddr.Addr, code membership.Code, certFile string, log *slog.Logger) (*identity.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, pairTimeout)
	defer cancel()
	addrs, err := with.Resolve(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("pair: %s: %w", with, err)
	}
	m, err := mesh.New(mesh.Config{Identity: id, ListenAddr: ":0", Logger: log})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := m.Start(ctx); err != nil {
		return nil, err
	}
	cert, err := m.Pair(ctx, addrs[0], with.NodeID(), code)
	if err != nil {
		return nil, fmt.Errorf("pair with %s: %w", with, err)
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o755); err != nil {
		return nil, err
	}
	if err := identity.SaveCertificate(certFile, cert); err != nil {
		return nil, err
	}
	log.Info("paired: certificate saved", "cert_file", certFile, "certificate", cert)
	return cert, nil
}

// pairTimeout bounds a pairing: a handshake gives up after 15 s.
const pairTimeout = 30 * time.Second

// memberFiles keeps what the node learns about membership in files: every
// revocation in the revocations file, an online-renewed certificate in
// the certificate file; and it takes a certificate file that changed (an
// offline renewal) without a restart.
type memberFiles struct {
	revoked chan struct{}              // 1 slot: save the revocations
	renewed chan *identity.Certificate // 1 slot: save this certificate
}

// newMemberFiles returns one and sets mc's hooks to feed it; they never
// block.
func newMemberFiles(mc *mesh.MembershipConfig) *memberFiles {
	k := &memberFiles{revoked: make(chan struct{}, 1), renewed: make(chan *identity.Certificate, 1)}
	mc.OnRevocation = func(*identity.Revocation) {
		select {
		case k.revoked <- struct{}{}:
		default: // a save is pending; it writes them all
		}
	}
	mc.OnCertificate = func(c *identity.Certificate) {
		select {
		case <-k.renewed: // replaced by the newer one
		default:
		}
		select {
		case k.renewed <- c:
		default:
		}
	}
	return k
}

// run keeps m's membership in the files of s until ctx ends.
func (k *memberFiles) run(ctx context.Context, m *mesh.Mesh, s *memberSettings, log *slog.Logger) {
	tick := time.NewTicker(certReload)
	defer tick.Stop()
	last := s.loaded
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.revoked:
			if err := identity.SaveRevocations(s.revocationsFile, m.Revocations()); err != nil {
				log.Error("membership: keeping the revocations failed", "file", s.revocationsFile, "err", err)
			}
		case c := <-k.renewed:
			if err := identity.SaveCertificate(s.certFile, c); err != nil {
				log.Error("membership: keeping the renewed certificate failed", "file", s.certFile, "err", err)
			}
			last, _ = readCertFile(s.certFile)
		case <-tick.C:
			// The file is small: comparing its bytes is cheaper than
			// trusting modification times of coarse resolution.
			data, err := readCertFile(s.certFile)
			if err != nil || bytes.Equal(data, last) {
				continue
			}
			last = data
			c, err := identity.ParseCertificatePEM(data)
			if err == nil {
				err = m.SetCertificate(c)
			}
			if err != nil {
				log.Error("membership: the certificate file changed but cannot be used", "file", s.certFile, "err", err)
			}
		}
	}
}

// Control methods.

// pairCodeParams are the parameters of "pair-code".
type pairCodeParams struct {
	Name          string   `json:"name"`
	Groups        []string `json:"groups"`
	ValidForSec   int64    `json:"valid_for_s"`
	CodeLifetimeS int64    `json:"code_lifetime_s"`
}

// pairCodeResult is the result of "pair-code".
type pairCodeResult struct {
	Code      string    `json:"code"`
	Expires   time.Time `json:"expires"`
	NodeID    string    `json:"node_id"`
	PublicKey string    `json:"public_key"`
	Addrs     []string  `json:"listen_addrs"`
}

// revokeParams are the parameters of "revoke": a node key to revoke with
// the node's authority, or revocations signed elsewhere (PEM).
type revokeParams struct {
	Key string `json:"key"`
	PEM string `json:"pem"`
}

// revokeResult is the result of "revoke".
type revokeResult struct {
	Revocations []string `json:"revocations"`
}

// membershipInfo is the result of "membership".
type membershipInfo struct {
	Closed      bool      `json:"closed"`
	Authorities []string  `json:"authorities"`
	Issuer      bool      `json:"issuer"`
	Certificate *certInfo `json:"certificate"` // null without one
	Revocations int       `json:"revocations"`
	Signatures  uint64    `json:"certificate_signatures_checked"`
	CacheHits   uint64    `json:"certificate_cache_hits"`
	Renewals    uint64    `json:"renewals"`
	Issued      uint64    `json:"issued"`
}

// certInfo describes a certificate.
type certInfo struct {
	Name      string    `json:"name"`
	Groups    []string  `json:"groups"`
	NodeID    string    `json:"node_id"`
	NodeKey   string    `json:"node_key"`
	Authority string    `json:"authority"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	RenewAt   time.Time `json:"renew_at"`
}

func describeCert(c *identity.Certificate) *certInfo {
	if c == nil {
		return nil
	}
	return &certInfo{
		Name: c.Name, Groups: append([]string{}, c.Groups...), NodeID: identity.NodeIDFromKey(c.NodeKey).String(),
		NodeKey: hex.EncodeToString(c.NodeKey), Authority: hex.EncodeToString(c.Authority),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), RenewAt: membership.RenewAt(c).UTC(),
	}
}

// memberMethods returns the control methods of membership.
func (n *node) memberMethods() map[string]method {
	return map[string]method{
		"membership": func(context.Context, json.RawMessage, func(any) error) (any, error) { return n.membershipInfo(), nil },
		"pair-code":  n.pairCode,
		"revoke":     n.revoke,
	}
}

func (n *node) membershipInfo() membershipInfo {
	st := n.m.MembershipStats()
	info := membershipInfo{
		Closed: st.Closed, Issuer: n.rc.member.authorityKey != "", Certificate: describeCert(n.m.Certificate()),
		Revocations: st.Revocations, Signatures: st.Signatures, CacheHits: st.CacheHits,
		Renewals: st.Renewals, Issued: st.Issued, Authorities: []string{},
	}
	for _, a := range n.rc.member.authorities {
		info.Authorities = append(info.Authorities, hex.EncodeToString(a))
	}
	if len(info.Authorities) == 0 && st.Closed && info.Certificate != nil {
		info.Authorities = append(info.Authorities, info.Certificate.Authority)
	}
	return info
}

func (n *node) pairCode(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p pairCodeParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, errorf(codeBadRequest, "parameters: %v", err)
	}
	g := membership.Grant{
		Name: p.Name, Groups: p.Groups,
		ValidFor: time.Duration(p.ValidForSec) * time.Second, CodeLifetime: time.Duration(p.CodeLifetimeS) * time.Second,
	}
	code, err := n.m.NewPairingCode(g)
	switch {
	case errors.Is(err, membership.ErrNotIssuer):
		return nil, errorf(codeFailed, "this node holds no authority key: set membership.authority_key in its config")
	case err != nil:
		return nil, errorf(codeBadRequest, "%v", err)
	}
	res := pairCodeResult{
		Code: code.String(), Expires: time.Now().Add(cmp.Or(g.CodeLifetime, membership.DefaultCodeLifetime)).UTC(),
		NodeID: n.m.ID().String(), PublicKey: hex.EncodeToString(n.m.Identity().PublicKey()),
	}
	for _, a := range n.m.ListenAddrs() {
		res.Addrs = append(res.Addrs, a.String())
	}
	return res, nil
}

func (n *node) revoke(_ context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var p revokeParams
	if err := json.Unmarshal(raw, &p); err != nil || (p.Key == "") == (p.PEM == "") {
		return nil, errorf(codeBadRequest, "parameters: want a key or revocations")
	}
	var res revokeResult
	if p.Key != "" {
		key, err := parsePublicKey(p.Key)
		if err != nil {
			return nil, errorf(codeBadRequest, "%v", err)
		}
		r, err := n.m.Revoke(key)
		if errors.Is(err, membership.ErrNotIssuer) {
			return nil, errorf(codeFailed, "this node holds no authority key: revoke with netnode ca revoke, then hand the file to netnode revoke")
		}
		if err != nil {
			return nil, errorf(codeFailed, "%v", err)
		}
		res.Revocations = append(res.Revocations, r.String())
		return res, nil
	}
	rs, err := identity.ParseRevocationsPEM([]byte(p.PEM))
	if err != nil || len(rs) == 0 {
		return nil, errorf(codeBadRequest, "revocations: %v", cmp.Or(err, errors.New("none given")))
	}
	for _, r := range rs {
		if err := n.m.AddRevocation(r); err != nil {
			return nil, errorf(codeFailed, "%v: %v", r, err)
		}
		res.Revocations = append(res.Revocations, r.String())
	}
	return res, nil
}
