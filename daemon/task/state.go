package task

import "fmt"

// State is where a task is in its life:
//
//	queued ──▶ running ──▶ succeeded | failed | cancelled
//	   │           │
//	   │           └──▶ lost (the worker died, left or forgot it)
//	   └──▶ cancelled | failed (TIMEOUT, or the worker shut down) | lost
//
// The worker moves a task from queued to running to a final state and
// tells the submitter; the submitter marks a task lost itself (see
// Submitter). Succeeded, failed, cancelled and lost are final, except
// that a result the same worker delivers after the task was marked lost
// still replaces it: the result is better information.
type State uint8

// Task states.
const (
	StateQueued State = iota + 1
	StateRunning
	StateSucceeded
	StateFailed
	StateCancelled
	StateLost
)

var stateNames = [...]string{"", "queued", "running", "succeeded", "failed", "cancelled", "lost"}

// String returns the state's name, for example "running".
func (s State) String() string {
	if int(s) < len(stateNames) && s != 0 {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Final reports whether s is a final state.
func (s State) Final() bool { return s >= StateSucceeded && s <= StateLost }

// valid reports whether s is one of the states.
func (s State) valid() bool { return s >= StateQueued && s <= StateLost }

// ParseState parses a state's name.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name && i != 0 {
			return State(i), nil
		}
	}
	return 0, fmt.Errorf("task: unknown state %q (want queued, running, succeeded, failed, cancelled or lost)", name)
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) {
	if !s.valid() {
		return nil, fmt.Errorf("task: invalid state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
