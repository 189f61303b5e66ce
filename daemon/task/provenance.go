package task

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/netmesh/netmesh/identity"
)

// Link is one hop of a task's forwarding chain: the node whose key is Key
// sent the task to To, and signed that.
type Link struct {
	Key ed25519.PublicKey
	To  identity.NodeID
	Sig []byte
}

// Chain is the signed provenance of a forwarded task: Chain[0] is signed
// by the original submitter over the task (id, skill and a hash of the
// parameters) and names the first node it sent the task to; every
// further link is signed by the node the previous link named, over the
// previous signature, and names the next node. The last link names the
// worker, and its signer must be the node the worker got the task from
// over an authenticated session. So a worker can verify who submitted a
// task and every node that forwarded it, in order: a link forged,
// dropped, reordered or moved to another task fails.
type Chain []Link

// Signature domains, so that a chain signature means nothing elsewhere.
const (
	chainOrigin  = "netmesh task chain v1 origin"
	chainForward = "netmesh task chain v1 forward"
)

// originMessage is what the first link signs.
func originMessage(id ID, skill string, params []byte, to identity.NodeID) []byte {
	ph := sha256.Sum256(params)
	msg := make([]byte, 0, len(chainOrigin)+IDSize+1+len(skill)+len(ph)+identity.NodeIDSize)
	msg = append(msg, chainOrigin...)
	msg = append(msg, id[:]...)
	msg = append(msg, byte(len(skill)))
	msg = append(msg, skill...)
	msg = append(msg, ph[:]...)
	return append(msg, to[:]...)
}

// forwardMessage is what a later link signs.
func forwardMessage(id ID, prevSig []byte, to identity.NodeID) []byte {
	ph := sha256.Sum256(prevSig)
	msg := make([]byte, 0, len(chainForward)+IDSize+len(ph)+identity.NodeIDSize)
	msg = append(msg, chainForward...)
	msg = append(msg, id[:]...)
	msg = append(msg, ph[:]...)
	return append(msg, to[:]...)
}

// SignOrigin returns the first link of a chain: the submitter self sends
// the task (id, skill, params) to node to. Submit adds it for a Request
// with Sign set; a node that hands a task to a controller by other means
// signs it with SignOrigin.
func SignOrigin(self *identity.Identity, id ID, skill string, params []byte, to identity.NodeID) Link {
	return Link{Key: self.PublicKey(), To: to, Sig: self.Sign(originMessage(id, skill, params, to))}
}

// Forward returns the chain with one more link: self, the node the last
// link names, forwards the task id to node to. The chain is not modified.
func (c Chain) Forward(self *identity.Identity, id ID, to identity.NodeID) Chain {
	prev := c[len(c)-1].Sig
	out := make(Chain, len(c), len(c)+1)
	copy(out, c)
	return append(out, Link{Key: self.PublicKey(), To: to, Sig: self.Sign(forwardMessage(id, prev, to))})
}

// Origin returns the node that signed the first link.
func (c Chain) Origin() identity.NodeID {
	if len(c) == 0 {
		return identity.NodeID{}
	}
	return identity.NodeIDFromKey(c[0].Key)
}

// Nodes returns the nodes of the chain in order: the origin, then each
// forwarder.
func (c Chain) Nodes() []identity.NodeID {
	out := make([]identity.NodeID, len(c))
	for i, l := range c {
		out[i] = identity.NodeIDFromKey(l.Key)
	}
	return out
}

// Verify checks the chain of task (id, skill, params) as received by node
// self from node from over an authenticated session. It returns an error
// of CodeProvenance saying what is wrong.
func (c Chain) Verify(id ID, skill string, params []byte, self, from identity.NodeID) error {
	bad := func(format string, args ...any) error {
		return &Error{Code: CodeProvenance, Task: id, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case len(c) == 0:
		return bad("empty chain")
	case len(c) > MaxChainLinks:
		return bad("%d links, at most %d", len(c), MaxChainLinks)
	}
	for i, l := range c {
		if len(l.Key) != ed25519.PublicKeySize || len(l.Sig) != ed25519.SignatureSize {
			return bad("link %d: malformed key or signature", i)
		}
		var msg []byte
		if i == 0 {
			msg = originMessage(id, skill, params, l.To)
		} else {
			if signer := identity.NodeIDFromKey(l.Key); signer != c[i-1].To {
				return bad("link %d is signed by %s, but link %d sent the task to %s", i, signer.Short(), i-1, c[i-1].To.Short())
			}
			msg = forwardMessage(id, c[i-1].Sig, l.To)
		}
		if !identity.Verify(l.Key, msg, l.Sig) {
			return bad("link %d: bad signature", i)
		}
	}
	last := c[len(c)-1]
	if last.To != self {
		return bad("the chain sends the task to %s, not to this node", last.To.Short())
	}
	if signer := identity.NodeIDFromKey(last.Key); signer != from {
		return bad("the last link is signed by %s, but the task came from %s", signer.Short(), from.Short())
	}
	return nil
}
