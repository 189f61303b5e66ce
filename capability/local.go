package capability

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// This node's own announcement.
//
// Several owners contribute to what a node announces: the application
// (Announce), layers such as the mesh (its subnet tag and reflex address)
// or rpc (one "rpc:<service>" tag per service) through AnnounceLayer, and
// telemetry. Each owner replaces only its own part, so an application that
// announces a new set does not drop the tags a layer owns. The set
// announced is their union: tags from every part (each once), metadata
// from the application's part, then each layer's in the order of the layer
// names, then telemetry, a later part's value replacing an earlier one's
// for the same key, and last the node's name (Config.Name) under NameKey.

// localState is this node's own announcement.
type localState struct {
	announced     bool           // a part was announced since New or the last Withdraw
	parts         map[string]Set // by owner: "" the application, else a layer
	telemetry     map[string]string
	degraded      bool
	version       uint64
	pending       bool // version not broadcast yet (rate limited)
	lastBroadcast time.Time
	wire          []byte // the last broadcast
	nextTelemetry time.Time
}

// merged is the set the parts, telemetry and name make together.
func (l *localState) merged(telemetry map[string]string, name string) Set {
	var eff Set
	seen := make(map[string]bool)
	for _, owner := range slices.Sorted(maps.Keys(l.parts)) { // "" first
		p := l.parts[owner]
		for _, t := range p.Tags {
			if !seen[t] {
				seen[t] = true
				eff.Tags = append(eff.Tags, t)
			}
		}
		eff.Metadata = with(eff.Metadata, p.Metadata)
	}
	eff.Metadata = with(eff.Metadata, telemetry)
	if name != "" {
		eff.Metadata = with(eff.Metadata, map[string]string{NameKey: name})
	}
	slices.Sort(eff.Tags)
	return eff
}

// with returns m with the entries of add copied in, allocating m if
// needed.
func with(m, add map[string]string) map[string]string {
	if len(add) == 0 {
		return m
	}
	if m == nil {
		m = make(map[string]string, len(add))
	}
	maps.Copy(m, add)
	return m
}

// Announce sets the application's part of this node's capability set (see
// AnnounceLayer for the parts layers own). The local index shows the new
// set at once; it is broadcast to every peer now, or at the end of the
// current MinAnnounceInterval if a broadcast went out less than that ago
// (bursts coalesce into one broadcast of the newest set). It fails with a
// *ValidationError if s, or s merged with the other parts, is invalid, or
// if s has a metadata key starting with "node:" (reserved: see NameKey);
// then nothing changes.
func (e *Engine) Announce(s Set) error { return e.AnnounceLayer("", s) }

// AnnounceLayer sets the part of this node's capability set that layer
// owns, such as "rpc" for its "rpc:<service>" tags, and announces the
// result like Announce. Layer "" is the application's part (Announce); an
// empty set removes a layer's part. Each owner replaces only its own part:
// tags of all parts are announced together, and for a metadata key in
// several parts the application's value gives way to a layer's (layers in
// the order of their names), and all to telemetry. Layer names are 1 to
// 64 characters of the tag alphabet.
func (e *Engine) AnnounceLayer(layer string, s Set) error {
	if layer != "" {
		if err := validateName("layer", layer, 1, MaxTagLen); err != nil {
			return err
		}
	}
	e.partMu.Lock()
	defer e.partMu.Unlock()
	return e.setPart(layer, s, false)
}

// RefreshLayer sets the part of this node's set that layer owns like
// AnnounceLayer, but announces it only while the node announces: before
// its first announcement and after Withdraw the part is only kept, and
// goes out with the next Announce or AnnounceLayer. The check and the
// change are one step, so a Withdraw that runs at the same time is never
// undone. It is for what a layer learns on its own (the mesh's reflex
// address), which must not make a silent or departing node announce.
func (e *Engine) RefreshLayer(layer string, s Set) error {
	if err := validateName("layer", layer, 1, MaxTagLen); err != nil {
		return err
	}
	e.partMu.Lock()
	defer e.partMu.Unlock()
	return e.setPart(layer, s, true)
}

// Update changes the part of this node's set that layer owns ("" for the
// application's) in one step: f gets a copy of the part as last announced
// and returns the new one, announced as by AnnounceLayer. Changes to this
// node's set wait while f runs, so f must not call Announce,
// AnnounceLayer or Update.
func (e *Engine) Update(layer string, f func(Set) Set) error {
	if layer != "" {
		if err := validateName("layer", layer, 1, MaxTagLen); err != nil {
			return err
		}
	}
	e.partMu.Lock()
	defer e.partMu.Unlock()
	return e.setPart(layer, f(e.Announced(layer)), false)
}

// Announced returns a copy of the part of this node's set that layer owns
// ("" for the application's), as last announced.
func (e *Engine) Announced(layer string) Set {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.local.parts[layer]
	return Set{Tags: slices.Clone(p.Tags), Metadata: maps.Clone(p.Metadata)}
}

// setPart validates s and makes it owner's part; with onlyWhileAnnounced
// it announces only if the node announces (see RefreshLayer). The caller
// holds partMu.
func (e *Engine) setPart(owner string, s Set, onlyWhileAnnounced bool) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := checkOwnedKeys(s); err != nil {
		return err
	}
	s = Set{Tags: slices.Sorted(slices.Values(s.Tags)), Metadata: maps.Clone(s.Metadata)}
	var o outbox
	e.mu.Lock()
	l := &e.local
	old, had := l.parts[owner]
	if l.parts == nil {
		l.parts = make(map[string]Set)
	}
	if owner != "" && len(s.Tags) == 0 && len(s.Metadata) == 0 {
		delete(l.parts, owner)
	} else {
		l.parts[owner] = s
	}
	if onlyWhileAnnounced && !l.announced {
		e.mu.Unlock()
		return nil
	}
	err := e.setLocalLocked(&o, l.telemetry, l.degraded)
	if err != nil {
		delete(l.parts, owner)
		if had {
			l.parts[owner] = old
		}
	}
	e.mu.Unlock()
	e.flush(&o)
	return err
}

// SetDegraded marks this node degraded (or not) in its announcements, for a
// node that works but should not be preferred (draining, overheating). It
// takes effect like Announce, and only after the first Announce.
func (e *Engine) SetDegraded(degraded bool) {
	var o outbox
	e.mu.Lock()
	if e.local.announced && e.local.degraded != degraded {
		// The parts were valid together when announced and telemetry is
		// unchanged, so this cannot fail.
		_ = e.setLocalLocked(&o, e.local.telemetry, degraded)
	}
	e.local.degraded = degraded
	e.mu.Unlock()
	e.flush(&o)
}

// Withdraw withdraws this node's announcement: it broadcasts a signed
// withdrawal at once (not rate limited), newer than every announcement it
// made, which every node that holds the announcement takes as this node
// leaving (NodeLeft: it drops the node at once) and forwards like an
// announcement. The local index drops this node too, and the engine stops
// refreshing it until the next Announce or AnnounceLayer, which announces
// the parts again. The node calls it when it leaves gracefully, before
// closing its sessions; it sends nothing if this node has not announced
// since the last Withdraw.
//
// It returns the signed withdrawal, in the wire form HandleMessage takes
// (the one it made earlier if the node was withdrawn already), for a
// node that hands it to its peers itself, as the mesh's goodbye does; nil
// if this node never announced. The caller must not modify it.
func (e *Engine) Withdraw() []byte {
	var o outbox
	e.mu.Lock()
	l := &e.local
	if l.announced {
		now := e.cfg.Now()
		l.version = nextVersion(l.version, now)
		a := Announcement{Version: l.version, TTL: e.cfg.TTL, Withdrawn: true, Hops: 1, Remaining: e.cfg.TTL}
		if err := a.Sign(e.id); err != nil {
			panic("capability: encoding a withdrawal: " + err.Error()) // unreachable: it has no set
		}
		l.wire, _ = a.MarshalBinary()
		l.announced, l.pending, l.lastBroadcast = false, false, now
		e.st.broadcasts.Add(1)
		o.msgs = append(o.msgs, outMsg{msg: l.wire})
		e.unindexLocked(e.id.NodeID(), NodeLeft)
	}
	withdrawal := l.wire
	e.mu.Unlock()
	e.flush(&o)
	return withdrawal
}

// setLocalLocked makes a new local version from the parts and telemetry,
// indexes it and broadcasts it unless rate limited. It fails, changing
// nothing, if the merged set is invalid.
func (e *Engine) setLocalLocked(o *outbox, telemetry map[string]string, degraded bool) error {
	l := &e.local
	eff := l.merged(telemetry, e.cfg.Name)
	if err := eff.Validate(); err != nil {
		return fmt.Errorf("capability: the parts of this node's set together: %w", err)
	}
	now := e.cfg.Now()
	l.announced, l.telemetry, l.degraded = true, telemetry, degraded
	l.version = nextVersion(l.version, now)
	l.pending = true
	status := StatusOnline
	if degraded {
		status = StatusDegraded
	}
	e.indexLocked(&Node{
		ID: e.id.NodeID(), Key: e.id.PublicKey(), Version: l.version, Set: eff,
		Status: status, Self: true, Updated: now, Expires: now.Add(e.cfg.TTL),
	})
	if l.lastBroadcast.IsZero() || now.Sub(l.lastBroadcast) >= e.cfg.MinAnnounceInterval {
		e.broadcastLocked(o, now)
	}
	return nil
}

// nextVersion returns a version above prev, from the clock when it can, so
// that a restarted node (which forgot prev) still announces versions above
// the ones its peers remember.
func nextVersion(prev uint64, now time.Time) uint64 {
	if t := now.UnixNano(); t > 0 && uint64(t) > prev {
		return uint64(t)
	}
	return prev + 1
}

// signLocalLocked signs the newest local version and returns its wire form.
func (e *Engine) signLocalLocked() []byte {
	self := e.ix.get(e.id.NodeID())
	// The origin vouches for itself afresh whenever it sends: full lifetime.
	a := Announcement{Version: self.Version, TTL: e.cfg.TTL, Degraded: e.local.degraded, Set: self.Set, Hops: 1, Remaining: e.cfg.TTL}
	if err := a.Sign(e.id); err != nil {
		panic("capability: encoding a validated local set: " + err.Error()) // unreachable: the set was validated
	}
	wire, _ := a.MarshalBinary()
	return wire
}

// broadcastLocked signs the pending local version and queues it to every
// peer.
func (e *Engine) broadcastLocked(o *outbox, now time.Time) {
	wire := e.signLocalLocked()
	e.local.wire, e.local.pending, e.local.lastBroadcast = wire, false, now
	e.st.broadcasts.Add(1)
	o.msgs = append(o.msgs, outMsg{msg: wire})
}
