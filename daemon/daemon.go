package daemon

import (
	"fmt"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// Daemon is a stateful event processor. The runtime calls Handle with one
// event at a time, in one order (the sequence numbers), from one
// goroutine, so a daemon needs no lock of its own.
//
// Handle must be deterministic: its effect on the state, and its outputs,
// must follow from the state and the event alone. Live migration and
// standbys rely on it: a copy restored from a snapshot and given the
// events applied since (Event.Replay) reaches the state the original
// had.
type Daemon interface {
	// Handle applies one event and returns the payloads it produced,
	// which go back to the event's sender. An error is returned to the
	// sender as HANDLER_ERROR; the event still counts as applied.
	Handle(ev Event) (outputs [][]byte, err error)
}

// Stateful is implemented by daemons with state to carry: Snapshot and
// Restore are called on the daemon's goroutine between events. A daemon
// that is not Stateful starts empty wherever it goes.
type Stateful interface {
	// Snapshot returns the state after the events applied so far. The
	// runtime owns the bytes.
	Snapshot() ([]byte, error)
	// Restore replaces the state with one a Snapshot of the same kind
	// returned, on a daemon the factory just made.
	Restore(state []byte) error
}

// Closer is implemented by daemons with resources to release: Close is
// called once when the daemon stops or leaves the node (after a
// migration, its copy here is closed).
type Closer interface {
	Close()
}

// Event is one event applied to a daemon.
type Event struct {
	// Seq is the event's sequence number: 1 + the number of events the
	// daemon applied before it, wherever it ran. It never repeats and has
	// no gaps.
	Seq uint64
	// From is the node that sent it, as its encrypted session
	// authenticated it.
	From identity.NodeID
	// Data is the event's payload. The daemon may keep it.
	Data []byte
	// Replay is true when the event was applied before, by the copy this
	// one was restored from (a migration's source, a failed standby's
	// active), and its outputs were delivered then: the daemon brings its
	// state up to date and should repeat no effect outside it. Its
	// outputs are discarded.
	Replay bool
}

// Kind is one kind of daemon a runtime can run: a name, the requirements
// a node must meet, and the factory that makes a daemon of the kind.
type Kind struct {
	// Name names the kind: 1 to MaxKindName bytes of the capability tag
	// alphabet (lowercase letters, digits, "-._/"). Runtimes announce
	// "daemon:<name>" for each kind they run.
	Name string
	// Requires is what a node's capabilities must match to run the kind:
	// placement looks only at matching nodes, and a node refuses a spawn
	// or migration it does not match (REQUIREMENTS_NOT_MET). The zero
	// Filter matches every node.
	Requires capability.Filter
	// New makes a daemon of the kind with its identity: id and its key.
	// The daemon may keep key to sign with. A restored daemon is made by
	// New, then given its state with Restore.
	New func(id ID, key *identity.Identity) (Daemon, error)
}

// Receipt says what became of one delivered event.
type Receipt struct {
	// Daemon is the daemon that applied it.
	Daemon ID `json:"daemon"`
	// Seq is its sequence number at the daemon.
	Seq uint64 `json:"seq"`
	// Node is where it was applied.
	Node identity.NodeID `json:"node"`
	// Outputs are what the daemon's Handle returned for it.
	Outputs [][]byte `json:"outputs,omitempty"`
	// Duplicate is true when the daemon had applied this very delivery
	// before (a resend after a failure): it was not applied again, Seq is
	// 0 and Outputs is empty.
	Duplicate bool `json:"duplicate,omitempty"`
}

// SpawnOptions says where a daemon goes.
type SpawnOptions struct {
	// Node spawns the daemon on that node (the runtime's own NodeID
	// spawns it here). Zero places it: among the nodes that run the kind
	// and match its requirements and Where, the least loaded, this one
	// included.
	Node identity.NodeID
	// Where narrows placement further. The zero Filter adds nothing.
	Where capability.Filter
	// Exclude lists nodes not to place on.
	Exclude []identity.NodeID
}

// Info describes one daemon a runtime hosts.
type Info struct {
	ID   ID              `json:"id"`
	Kind string          `json:"kind"`
	Node identity.NodeID `json:"node"`
	// Owner is the node that spawned it: with the host, the only node
	// that may stop, snapshot, migrate or fork it.
	Owner identity.NodeID `json:"owner"`
	// State is "running", "migrating" (its snapshot is on the way to
	// Target), "frozen" (cutting over: events wait), or "stopping".
	State string `json:"state"`
	// Phase is the migration's phase while migrating.
	Phase  Phase           `json:"phase,omitempty"`
	Target identity.NodeID `json:"target,omitzero"`
	// Seq is the sequence number of the last event applied.
	Seq uint64 `json:"seq"`
	// Applied counts the events applied on this node (replays
	// included), Duplicates the resends it recognised.
	Applied    uint64 `json:"applied"`
	Duplicates uint64 `json:"duplicates,omitempty"`
	// Queued is the number of events in its inbox.
	Queued int `json:"queued"`
	// Since is when it started on this node.
	Since time.Time `json:"since"`
	// Standbys are the nodes holding its standbys.
	Standbys []identity.NodeID `json:"standbys,omitempty"`
	// Fork links a forked daemon to its parent.
	Fork *ForkRecord `json:"fork,omitempty"`
}

// Snapshot is a daemon's state at a sequence number, as Runtime.Snapshot
// and Runtime.Stop return it, and SpawnFromSnapshot takes it.
type Snapshot struct {
	Daemon ID     `json:"daemon"`
	Kind   string `json:"kind"`
	// Seq is the sequence number of the last event the state includes.
	Seq uint64 `json:"seq"`
	// State is what the daemon's Snapshot returned (nil for a daemon
	// that is not Stateful).
	State []byte          `json:"state"`
	Owner identity.NodeID `json:"owner"`
	// Key is the daemon's private key sealed (HPKE) to the node that
	// asked for the snapshot, SealedFor: only that node can spawn the
	// same daemon (same id) from it.
	Key       []byte          `json:"key"`
	SealedFor identity.NodeID `json:"sealed_for"`
	// Fork is the daemon's fork record, if it is a fork.
	Fork *ForkRecord `json:"fork,omitempty"`
}

// Phase is a phase of a live migration, in the order they run.
type Phase uint8

// The phases of Migrate.
const (
	// PhaseSnapshot: the source takes the daemon's snapshot between two
	// events and starts logging the events it applies after it.
	PhaseSnapshot Phase = iota + 1
	// PhaseTransfer: the source sends the target the daemon's kind, its
	// key sealed to the target, and the snapshot in chunks; the target
	// checks the factory, the requirements and the key.
	PhaseTransfer
	// PhaseRestore: the target makes the daemon and restores the
	// snapshot.
	PhaseRestore
	// PhaseReplay: the source sends the events it applied since the
	// snapshot; the target replays them.
	PhaseReplay
	// PhaseCutover: the source stops applying (new events wait in the
	// inbox), sends the last logged events, and the target commits: from
	// then on it holds the daemon.
	PhaseCutover
	// PhaseComplete: the source hands the waiting events to the target,
	// redirects senders, and forgets the daemon.
	PhaseComplete
)

var phaseNames = [...]string{"", "snapshot", "transfer", "restore", "replay", "cutover", "complete"}

// String returns the phase's name, "snapshot" to "complete".
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase?"
}

// MarshalText implements encoding.TextMarshaler.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Phase) UnmarshalText(b []byte) error {
	for i, name := range phaseNames {
		if i > 0 && name == string(b) {
			*p = Phase(i)
			return nil
		}
	}
	return fmt.Errorf("daemon: unknown phase %q", b)
}
