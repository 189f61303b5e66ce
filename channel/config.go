package channel

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/identity"
)

// Visibility says which subnets a channel is visible to, judged between the
// publisher's subnet and the subscriber's.
type Visibility uint8

// Visibilities.
const (
	// Global: every node, whatever its subnet (the zero value).
	Global Visibility = iota
	// SubnetLocal: nodes in exactly the publisher's subnet.
	SubnetLocal
	// ParentVisible: nodes in the publisher's subnet, in an ancestor of it
	// (a region sees its racks' channels) or below it (a rack sees its
	// region's channels).
	ParentVisible
)

// String returns "global", "subnet-local" or "parent-visible".
func (v Visibility) String() string {
	switch v {
	case Global:
		return "global"
	case SubnetLocal:
		return "subnet-local"
	case ParentVisible:
		return "parent-visible"
	}
	return fmt.Sprintf("visibility(%d)", uint8(v))
}

// Visible reports whether a channel of visibility v published from subnet
// pub is visible to a node in subnet sub. Outside Global, a zero subnet on
// either side sees nothing.
func (v Visibility) Visible(pub, sub SubnetID) bool {
	switch v {
	case Global:
		return true
	case SubnetLocal:
		return !pub.IsZero() && pub == sub
	case ParentVisible:
		return !pub.IsZero() && !sub.IsZero() && (pub == sub || pub.IsAncestorOf(sub) || sub.IsAncestorOf(pub))
	}
	return false
}

// Config is one channel's access policy and limits. The zero value is a
// Global channel anyone may subscribe to, with default limits.
type Config struct {
	// Visibility limits subscribers by subnet.
	Visibility Visibility
	// PublishCaps must match this node's own announced capabilities for
	// Publish to send; the zero Filter matches every node.
	PublishCaps capability.Filter
	// SubscribeCaps must match a subscriber's announced capabilities; the
	// zero Filter matches every node, even one that has not announced.
	SubscribeCaps capability.Filter
	// SubscribeGroups, if not empty, admits only subscribers whose
	// membership certificate names at least one of these groups (see
	// Options.InGroup and docs/SECURITY.md). Unlike capabilities, which a
	// node claims for itself, groups are granted by a membership
	// authority.
	SubscribeGroups []string
	// PublishGroups, if not empty, lets Publish send only while this
	// node's own membership certificate names one of these groups.
	PublishGroups []string
	// RequireToken requires subscribers to present a PermissionToken
	// granting identity.PermSubscribe on the channel, issued to the key
	// they authenticated with by this node or one of TokenIssuers.
	RequireToken bool
	// TokenIssuers are trusted token issuers besides this node's own key
	// (an organisation's authority key, say).
	TokenIssuers []ed25519.PublicKey
	// PublishToken, if set, must grant identity.PermPublish on the channel
	// to this node, from this node's key or one of TokenIssuers: a node
	// publishing on behalf of an authority proves it may. It is checked by
	// Register and, for expiry, by every Publish.
	PublishToken *identity.PermissionToken
	// MaxSubscribers bounds the channel's subscribers; 0 means
	// DefaultMaxSubscribers, at most MaxSubscribersLimit.
	MaxSubscribers int
	// PendingLimit is the pending-queue length each subscriber is told to
	// keep (it travels in the acknowledgement); 0 means
	// DefaultPendingLimit, at most MaxPendingLimit.
	PendingLimit int
	// PublishWait is how long one Publish waits for room at subscribers
	// whose queue the Transport found full (a node slower than the
	// publisher), when the Transport can wait (see Waiter); a subscriber
	// still full then is reported failed and marked slow, and later
	// publishes do not wait for it until a send to it goes through
	// again. 0 means DefaultPublishWait; negative, never wait.
	PublishWait time.Duration
}

// withDefaults validates c and fills zero limits.
func (c Config) withDefaults() (Config, error) {
	if c.MaxSubscribers == 0 {
		c.MaxSubscribers = DefaultMaxSubscribers
	}
	if c.PendingLimit == 0 {
		c.PendingLimit = DefaultPendingLimit
	}
	if c.PublishWait == 0 {
		c.PublishWait = DefaultPublishWait
	}
	switch {
	case c.Visibility > ParentVisible:
		return c, fmt.Errorf("%w: unknown visibility %d", ErrInvalidConfig, c.Visibility)
	case c.MaxSubscribers < 0 || c.MaxSubscribers > MaxSubscribersLimit:
		return c, fmt.Errorf("%w: MaxSubscribers %d not in 0..%d", ErrInvalidConfig, c.MaxSubscribers, MaxSubscribersLimit)
	case c.PendingLimit < 0 || c.PendingLimit > MaxPendingLimit:
		return c, fmt.Errorf("%w: PendingLimit %d not in 0..%d", ErrInvalidConfig, c.PendingLimit, MaxPendingLimit)
	}
	for _, k := range c.TokenIssuers {
		if len(k) != ed25519.PublicKeySize {
			return c, fmt.Errorf("%w: token issuer key of %d bytes", ErrInvalidConfig, len(k))
		}
	}
	for _, g := range append(slices.Clone(c.SubscribeGroups), c.PublishGroups...) {
		if !identity.ValidCertLabel(g, identity.MaxCertGroupLen) {
			return c, fmt.Errorf("%w: group %q must be 1..%d bytes of a-z, 0-9, '-', '_' and '.'", ErrInvalidConfig, g, identity.MaxCertGroupLen)
		}
	}
	c.SubscribeGroups, c.PublishGroups = slices.Clone(c.SubscribeGroups), slices.Clone(c.PublishGroups)
	return c, nil
}

// Options configure an Engine. The zero value is valid: real clock, no
// subnet policy, default sweep and limiter settings.
type Options struct {
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// Policy derives every node's subnet from its announcement.
	Policy SubnetPolicy
	// Subnet pins this node's own subnet, overriding Policy. The mesh
	// should also announce SubnetTag(Subnet) so that other nodes derive
	// the same subnet for it.
	Subnet SubnetID
	// SweepInterval is how often Tick sweeps subscribers; 0 means
	// DefaultSweepInterval.
	SweepInterval time.Duration
	// AuthFailureLimit failed subscribe requests from one peer within
	// AuthFailureWindow throttle it for AuthThrottle. Zeros mean the
	// defaults; a negative AuthFailureLimit disables the limiter.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	AuthThrottle      time.Duration
	// TokenCache verifies tokens; nil means a private cache of
	// identity.DefaultTokenCacheSize. Engines may share one.
	TokenCache *identity.TokenCache
	// InGroup reports whether node id (this node's own id included)
	// holds a verified membership certificate naming any of groups: the
	// check behind Config.SubscribeGroups and PublishGroups. Nil means no
	// node is in any group, so a channel that requires groups admits no
	// one. The mesh sets it (mesh.Mesh.InGroup).
	InGroup func(id identity.NodeID, groups ...string) bool
	// Logger receives debug logs of rejected requests and dropped
	// messages; nil discards them.
	Logger *slog.Logger
	// MaxPending and MaxPendingBytes cap the queue of every subscription
	// of this node, in messages and in payload bytes: a subscription
	// queues at most the smaller of MaxPending and the publisher's
	// PendingLimit, and drops (and counts) a message that would take its
	// payload bytes past MaxPendingBytes. Zeros mean DefaultMaxPending
	// and DefaultMaxPendingBytes; MaxPending is at most MaxPendingLimit,
	// MaxPendingBytes at least MaxPayloadSize.
	MaxPending      int
	MaxPendingBytes int
}

func (o Options) withDefaults() (Options, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.AuthFailureLimit == 0 {
		o.AuthFailureLimit = DefaultAuthFailureLimit
	}
	if o.AuthFailureWindow == 0 {
		o.AuthFailureWindow = DefaultAuthFailureWindow
	}
	if o.AuthThrottle == 0 {
		o.AuthThrottle = DefaultAuthThrottle
	}
	if o.TokenCache == nil {
		o.TokenCache = identity.NewTokenCache(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxPending == 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	switch {
	case o.SweepInterval < 0 || o.AuthFailureWindow < 0 || o.AuthThrottle < 0:
		return o, fmt.Errorf("%w: negative interval", ErrInvalidConfig)
	case o.MaxPending < 0 || o.MaxPending > MaxPendingLimit:
		return o, fmt.Errorf("%w: MaxPending %d not in 0..%d", ErrInvalidConfig, o.MaxPending, MaxPendingLimit)
	case o.MaxPendingBytes < MaxPayloadSize:
		return o, fmt.Errorf("%w: MaxPendingBytes %d below MaxPayloadSize %d", ErrInvalidConfig, o.MaxPendingBytes, MaxPayloadSize)
	case !o.Subnet.Valid():
		return o, fmt.Errorf("%w: subnet %s has a level after a zero level", ErrInvalidConfig, o.Subnet)
	}
	if err := o.Policy.Validate(); err != nil {
		return o, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return o, nil
}
