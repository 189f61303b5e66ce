package capability

import "errors"

// Sentinel errors. HandleMessage returns one of the rejection errors for every
// announcement it refuses; each has a counter in Stats.
var (
	// ErrInvalidSet reports a Set that breaks a limit or the tag alphabet;
	// the error is a *ValidationError that says which field and why.
	ErrInvalidSet = errors.New("capability: invalid set")
	// ErrInvalidFilter reports a filter expression that does not parse.
	ErrInvalidFilter = errors.New("capability: invalid filter")
	// ErrInvalidConfig reports a Config that New cannot use.
	ErrInvalidConfig = errors.New("capability: invalid config")

	// ErrMalformed rejects bytes that are not a well-formed announcement.
	ErrMalformed = errors.New("capability: malformed announcement")
	// ErrOversized rejects an announcement larger than MaxAnnouncementSize
	// or whose set is larger than MaxSetSize.
	ErrOversized = errors.New("capability: announcement too large")
	// ErrHopLimit rejects an announcement that travelled more than MaxHops.
	ErrHopLimit = errors.New("capability: hop limit exceeded")
	// ErrBadSignature rejects an announcement whose signature does not
	// verify under the key it carries.
	ErrBadSignature = errors.New("capability: bad signature")
	// ErrTampered rejects a copy of an announcement this node already holds
	// (same origin and version) whose signed content differs: someone on
	// the path changed it.
	ErrTampered = errors.New("capability: tampered announcement")
	// ErrRebinding rejects an announcement whose key does not match the
	// origin NodeID, or differs from the key pinned for that NodeID.
	ErrRebinding = errors.New("capability: node id bound to another key")
	// ErrOldVersion rejects an announcement older than the one held.
	ErrOldVersion = errors.New("capability: old announcement version")
	// ErrUnsigned rejects an unsigned announcement when
	// Config.AllowUnsigned is false (the default).
	ErrUnsigned = errors.New("capability: unsigned announcement")
	// ErrExpired rejects an announcement whose sender had no lifetime left
	// for it (remaining lifetime 0): it must not be indexed or forwarded.
	ErrExpired = errors.New("capability: expired announcement")
	// ErrIndexFull rejects an announcement from a new origin when the
	// engine already remembers Config.MaxNodes origins and none it may
	// displace is offline.
	ErrIndexFull = errors.New("capability: index full")
	// ErrPeerOriginLimit rejects an announcement from a new origin when the
	// neighbour it came from introduced Config.MaxOriginsPerPeer of the
	// origins remembered and none of them is offline.
	ErrPeerOriginLimit = errors.New("capability: neighbour introduced too many origins")
	// ErrOriginRate rejects an announcement from a new origin when the
	// neighbour it came from has used up its budget for new origins
	// (Config.OriginRate, Config.OriginBurst).
	ErrOriginRate = errors.New("capability: neighbour introduces new origins too fast")
)

// ValidationError says which part of a Set is invalid. It wraps
// ErrInvalidSet.
type ValidationError struct {
	Field  string // "tag", "metadata key", "metadata value", "set"
	Value  string // the offending tag or key ("" for whole-set limits)
	Reason string
}

// Error implements error.
func (e *ValidationError) Error() string {
	if e.Value == "" {
		return "capability: invalid " + e.Field + ": " + e.Reason
	}
	return "capability: invalid " + e.Field + " " + quote(e.Value) + ": " + e.Reason
}

// Unwrap returns ErrInvalidSet.
func (e *ValidationError) Unwrap() error { return ErrInvalidSet }
