package daemon

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/daemon/placement"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// Config configures a Runtime. The zero value of every field is a
// documented default.
type Config struct {
	// MaxDaemons bounds the daemons hosted here, arriving ones included;
	// it is the load limit placement sees. 0 means DefaultMaxDaemons.
	MaxDaemons int
	// MaxPerOwner bounds the daemons one owner node has here. 0 means
	// DefaultMaxPerOwner.
	MaxPerOwner int
	// InboxSize bounds one daemon's events accepted and not yet applied.
	// 0 means DefaultInboxSize.
	InboxSize int
	// MaxEventSize, MaxOutputSize and MaxStateSize bound, in bytes, one
	// event, the outputs of one event, and a snapshot. 0 means the
	// Default of each. MaxEventSize is at most 512 KiB, so that an event
	// always fits one call of the rpc server's default request limit.
	MaxEventSize, MaxOutputSize, MaxStateSize int
	// MaxReplayLog bounds the events logged during a migration, and
	// buffered by a standby between syncs. 0 means DefaultMaxReplayLog.
	MaxReplayLog int
	// MigrationTimeout bounds one migration (or standby sync) when the
	// caller's context has no earlier deadline, and how long an inbound
	// transfer waits for its next message. 0 means
	// DefaultMigrationTimeout.
	MigrationTimeout time.Duration
	// CallTimeout bounds one rpc call. 0 means DefaultCallTimeout.
	CallTimeout time.Duration
	// LoadInterval is how often the load is re-announced when it
	// changed. 0 means DefaultLoadInterval.
	LoadInterval time.Duration
	// Logger receives panics of daemons and failures in the background.
	// Nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	orDefault(&c.MaxDaemons, DefaultMaxDaemons)
	orDefault(&c.MaxPerOwner, DefaultMaxPerOwner)
	orDefault(&c.InboxSize, DefaultInboxSize)
	orDefault(&c.MaxEventSize, DefaultMaxEventSize)
	c.MaxEventSize = min(c.MaxEventSize, maxBatchBytes)
	orDefault(&c.MaxOutputSize, DefaultMaxOutputSize)
	orDefault(&c.MaxStateSize, DefaultMaxStateSize)
	orDefault(&c.MaxReplayLog, DefaultMaxReplayLog)
	orDefault(&c.MigrationTimeout, DefaultMigrationTimeout)
	orDefault(&c.CallTimeout, DefaultCallTimeout)
	orDefault(&c.LoadInterval, DefaultLoadInterval)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// orDefault sets *v to d when it is zero or negative.
func orDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Runtime runs daemons on one node and reaches daemons on others. It
// serves HostService and ImageService on the node's rpc server, and
// announces the kinds it runs ("daemon:<kind>") and its load (under
// LoadPrefix) in the node's capabilities. Its methods are safe for
// concurrent use.
//
// Goroutines: one per hosted daemon (it applies the daemon's events),
// one per destination daemon this node is sending events to while a
// batch is on its way, one that re-announces the load, and, for each
// group created here, one that watches its members' nodes. Inbound
// calls run on the rpc server's goroutines.
type Runtime struct {
	m      *mesh.Mesh
	cli    *rpc.Client
	cfg    Config
	log    *slog.Logger
	self   identity.NodeID
	inc    uint64 // this runtime's incarnation: names it as a sender
	ctr    atomic.Uint64
	placer *placement.Placer
	routes router

	kindsMu sync.Mutex // serialises Register
	kinds   atomic.Pointer[map[string]*Kind]
	advMu   sync.Mutex // serialises announcements, so the last one wins

	// mu guards the tables below. Methods named ...Locked need it
	// written; the delivery path only reads them.
	mu        sync.RWMutex
	daemons   map[ID]*instance
	tombs     map[ID]tombstone
	tombOrder []tombRef        // oldest first; an entry whose tombstone was replaced is skipped
	incoming  map[ID]*incoming // by transfer id
	standbys  map[ID]*standbyCopy
	groups    map[*groupBase]struct{}
	closed    bool
	loadDirty bool
	closing   atomic.Bool // closed, readable without mu

	counters runtimeCounters // see RuntimeStats

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	hook      atomic.Pointer[func(s side, p Phase) error] // tests inject failures
	loseReply atomic.Pointer[func() bool]                 // tests lose the reply to a cutover
}

// tombRef is a tombstone in the order they were made.
type tombRef struct {
	id ID
	at time.Time
}

// tombstone remembers where a daemon went.
type tombstone struct {
	to   identity.NodeID
	xfer ID
	at   time.Time
}

// NewRuntime starts a runtime on m, serving on srv (the rpc server of m).
// It hosts nothing and runs no kind until Register.
func NewRuntime(m *mesh.Mesh, srv *rpc.Server, cfg Config) (*Runtime, error) {
	cfg.setDefaults()
	var b [8]byte
	rand.Read(b[:])
	rt := &Runtime{
		m:        m,
		cli:      rpc.NewClient(m, rpc.ClientOptions{}),
		cfg:      cfg,
		log:      cfg.Logger,
		self:     m.ID(),
		inc:      binary.BigEndian.Uint64(b[:]) | 1, // never 0: 0 means "no deduplication"
		placer:   placement.New(m, placement.Config{Prefix: LoadPrefix}),
		daemons:  make(map[ID]*instance),
		tombs:    make(map[ID]tombstone),
		incoming: make(map[ID]*incoming),
		standbys: make(map[ID]*standbyCopy),
		groups:   make(map[*groupBase]struct{}),
	}
	rt.routes.init(rt)
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	rt.kinds.Store(&map[string]*Kind{})
	if err := rt.serveOn(srv); err != nil {
		rt.cancel()
		return nil, err
	}
	if err := rt.advertise(); err != nil {
		rt.log.Warn("daemon: announcing the runtime failed", "err", err)
	}
	rt.wg.Add(1)
	go rt.loadLoop()
	return rt, nil
}

// Register adds a kind this runtime runs, and announces it. It fails with
// ErrInvalidKind (the error says why), ErrKindExists, ErrClosed, or the
// error of announcing the new capability set, in which case the kind is
// not registered.
func (rt *Runtime) Register(k Kind) error {
	if err := validKind(k.Name); err != nil {
		return err
	}
	if k.New == nil {
		return fmt.Errorf("%w: kind %q has no factory", ErrInvalidKind, k.Name)
	}
	rt.kindsMu.Lock()
	defer rt.kindsMu.Unlock()
	if rt.isClosed() {
		return ErrClosed
	}
	old := *rt.kinds.Load()
	if _, ok := old[k.Name]; ok {
		return fmt.Errorf("%w: %q", ErrKindExists, k.Name)
	}
	next := maps.Clone(old)
	next[k.Name] = &k
	rt.kinds.Store(&next)
	if err := rt.advertise(); err != nil {
		rt.kinds.Store(&old)
		return err
	}
	return nil
}

// validKind checks a kind name: the capability tag alphabet without ":",
// 1 to MaxKindName bytes.
func validKind(name string) error {
	if name == "" || len(name) > MaxKindName {
		return fmt.Errorf("%w: name %q must be 1 to %d bytes", ErrInvalidKind, name, MaxKindName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && !strings.ContainsRune("-._/", rune(c)) {
			return fmt.Errorf("%w: name %q: only a-z, 0-9 and -._/", ErrInvalidKind, name)
		}
	}
	return nil
}

// Kinds returns the names of the kinds registered here, sorted.
func (rt *Runtime) Kinds() []string {
	return slices.Sorted(maps.Keys(*rt.kinds.Load()))
}

// kind returns the kind registered under name, or nil.
func (rt *Runtime) kind(name string) *Kind { return (*rt.kinds.Load())[name] }

// ID returns the runtime's node.
func (rt *Runtime) ID() identity.NodeID { return rt.self }

// List returns the daemons hosted here, by id.
func (rt *Runtime) List() []Info {
	rt.mu.Lock()
	ins := slices.Collect(maps.Values(rt.daemons))
	rt.mu.Unlock()
	out := make([]Info, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.info())
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	return out
}

// Stats returns the Info of daemon id, wherever it runs: here, or asked
// of its host.
func (rt *Runtime) Stats(ctx context.Context, id ID) (Info, error) {
	if in := rt.hosted(id); in != nil {
		return in.info(), nil
	}
	var info Info
	err := rt.onHost(ctx, id, func(node identity.NodeID) error {
		resp, err := rt.call(ctx, node, appendRequest(nil, opInfo, id))
		if err != nil {
			return err
		}
		info, err = parseInfo(resp)
		return err
	})
	return info, err
}

// Load returns the runtime's load as placement sees it: daemons hosted
// or arriving, and MaxDaemons.
func (rt *Runtime) Load() placement.Load {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.loadLocked()
}

func (rt *Runtime) loadLocked() placement.Load {
	return placement.Load{Running: len(rt.daemons) + len(rt.incoming), Limit: rt.cfg.MaxDaemons}
}

// hosted returns the instance of id hosted here, or nil.
func (rt *Runtime) hosted(id ID) *instance {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	return rt.daemons[id]
}

// isClosed reports whether Close was called.
func (rt *Runtime) isClosed() bool { return rt.closing.Load() }

// markDirtyLocked notes that the load changed.
func (rt *Runtime) markDirtyLocked() { rt.loadDirty = true }

// tombLocked remembers that id went to node, forgetting the tombstones
// older than tombstoneAge and the oldest beyond maxTombstones.
func (rt *Runtime) tombLocked(id ID, to identity.NodeID, xfer ID) {
	now := time.Now()
	for len(rt.tombOrder) > 0 {
		old := rt.tombOrder[0]
		if len(rt.tombOrder) < maxTombstones && now.Sub(old.at) < tombstoneAge {
			break
		}
		if t, ok := rt.tombs[old.id]; ok && t.at.Equal(old.at) {
			delete(rt.tombs, old.id)
		}
		rt.tombOrder = rt.tombOrder[1:]
	}
	rt.tombs[id] = tombstone{to: to, xfer: xfer, at: now}
	rt.tombOrder = append(rt.tombOrder, tombRef{id, now})
}

// tombFor returns where id went, if it left this node recently.
func (rt *Runtime) tombFor(id ID) (tombstone, bool) {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	t, ok := rt.tombs[id]
	return t, ok && time.Since(t.at) < tombstoneAge
}

// advertise puts the kinds and the load into the node's capability set,
// replacing what it put there before and keeping the rest.
func (rt *Runtime) advertise() error {
	rt.advMu.Lock()
	defer rt.advMu.Unlock()
	var tags []string
	for _, k := range rt.Kinds() {
		tags = append(tags, KindTagPrefix+k)
	}
	md := map[string]string{}
	rt.mu.Lock()
	if !rt.closed {
		rt.loadLocked().Put(md, LoadPrefix)
	} else {
		tags = nil
	}
	rt.loadDirty = false
	rt.mu.Unlock()
	ours := placement.Keys(LoadPrefix)
	return rt.m.UpdateCapabilities(func(s capability.Set) capability.Set {
		out := capability.Set{Metadata: maps.Clone(s.Metadata)}
		if out.Metadata == nil {
			out.Metadata = map[string]string{}
		}
		for _, t := range s.Tags {
			if !strings.HasPrefix(t, KindTagPrefix) {
				out.Tags = append(out.Tags, t)
			}
		}
		out.Tags = append(out.Tags, tags...)
		for _, k := range ours {
			delete(out.Metadata, k)
		}
		maps.Copy(out.Metadata, md)
		return out
	})
}

// loadLoop re-announces the load every LoadInterval if it changed, and
// expires inbound transfers that went silent.
func (rt *Runtime) loadLoop() {
	defer rt.wg.Done()
	t := time.NewTicker(rt.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-rt.ctx.Done():
			return
		case <-t.C:
		}
		rt.expireIncoming(time.Now())
		rt.mu.Lock()
		dirty := rt.loadDirty
		rt.mu.Unlock()
		if dirty {
			if err := rt.advertise(); err != nil {
				rt.log.Warn("daemon: announcing the load failed", "err", err)
			}
		}
	}
}

// Close stops the runtime: it withdraws its kinds and load from the
// node's capabilities, stops every daemon hosted here after the events
// in its inbox (they die with the runtime: migrate them first to keep
// them), drops inbound transfers and standbys, stops its groups'
// watchers, and waits for its goroutines. Calls made afterwards fail with
// ErrClosed. Close is idempotent.
func (rt *Runtime) Close() error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	rt.closing.Store(true)
	ins := slices.Collect(maps.Values(rt.daemons))
	for _, in := range ins {
		in.mu.Lock()
		if in.state == stRunning || in.state == stFrozen || in.state == stArriving {
			in.state = stStopping
			in.cond.Signal()
		}
		in.mu.Unlock()
	}
	clear(rt.incoming) // committed ones are hosted: stopped above
	clear(rt.standbys)
	groups := slices.Collect(maps.Keys(rt.groups))
	rt.mu.Unlock()
	for _, g := range groups {
		g.close()
	}
	rt.cancel()
	err := rt.advertise()
	rt.wg.Wait()
	rt.mu.Lock()
	clear(rt.daemons)
	rt.mu.Unlock()
	return err
}

// spawn runs f on a goroutine of the runtime's, unless the runtime is
// closed: Close waits for it.
func (rt *Runtime) spawn(f func()) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return false
	}
	rt.wg.Add(1)
	go func() {
		defer rt.wg.Done()
		f()
	}()
	return true
}

// call calls HostService on node.
func (rt *Runtime) call(ctx context.Context, node identity.NodeID, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.CallTimeout)
	defer cancel()
	resp, err := rt.cli.Call(ctx, node, HostService, req)
	if err != nil {
		return nil, callError(err, node)
	}
	return resp, nil
}

// nodeKey returns the ed25519 key of node: from its session, or from its
// capability announcement.
func (rt *Runtime) nodeKey(node identity.NodeID) ([]byte, bool) {
	if node == rt.self {
		return rt.m.Identity().PublicKey(), true
	}
	if p := rt.m.Peer(node); p != nil && len(p.PublicKey()) > 0 {
		return p.PublicKey(), true
	}
	if n, ok := rt.m.Capabilities().Index().Lookup(node); ok {
		return n.Key, true
	}
	return nil, false
}

// meets reports whether this node's capabilities match f.
func (rt *Runtime) meets(f capability.Filter) bool {
	n, ok := rt.m.Capabilities().Index().Lookup(rt.self)
	return ok && f.Match(n)
}
