package channel

import (
	"errors"
	"fmt"

	"github.com/netmesh/netmesh/identity"
)

// Sentinel errors. A rejected or ended subscription is reported as a
// *RejectError, which matches the sentinel of its Reason with errors.Is
// (and, for token rejections, the identity.ErrToken... sentinel of the
// token problem).
var (
	// ErrInvalidName reports a channel name that breaks the rules of
	// ValidateName.
	ErrInvalidName = errors.New("channel: invalid channel name")
	// ErrInvalidSubnet reports a subnet id or policy that does not parse.
	ErrInvalidSubnet = errors.New("channel: invalid subnet")
	// ErrInvalidConfig reports a Config or Options that cannot be used.
	ErrInvalidConfig = errors.New("channel: invalid config")
	// ErrMalformed reports a channel message that does not decode.
	ErrMalformed = errors.New("channel: malformed message")
	// ErrTooLarge reports a payload over MaxPayloadSize.
	ErrTooLarge = errors.New("channel: payload too large")

	// ErrUnknownChannel: the publisher has no channel of that name.
	ErrUnknownChannel = errors.New("channel: unknown channel")
	// ErrUnauthorized: the subscriber (or a publisher, for its own channel)
	// fails the channel's capability filter, token requirement or subnet
	// visibility.
	ErrUnauthorized = errors.New("channel: unauthorized")
	// ErrRateLimited: the publisher throttles this peer after too many
	// failed subscribe requests.
	ErrRateLimited = errors.New("channel: rate limited")
	// ErrTooManySubscribers: the channel has Config.MaxSubscribers.
	ErrTooManySubscribers = errors.New("channel: too many subscribers")
	// ErrTokenRequired: the channel requires a token and none was given.
	ErrTokenRequired = errors.New("channel: token required")
	// ErrTokenRevoked: the publisher revoked the token (Engine.Revoke).
	ErrTokenRevoked = errors.New("channel: token revoked")

	// ErrSlowSubscriber is in a PublishFailure when the subscriber's node
	// had no room for the message for all of Config.PublishWait; later
	// publishes do not wait for it until a send to it goes through.
	ErrSlowSubscriber = errors.New("channel: slow subscriber, no room within PublishWait")

	// errPublishWait ends a publish's wait for room (Config.PublishWait).
	errPublishWait = errors.New("channel: PublishWait ran out")

	// ErrAlreadySubscribed reports a second Subscribe to the same
	// publisher and channel while the first is active.
	ErrAlreadySubscribed = errors.New("channel: already subscribed")
	// ErrUnsubscribed is returned by Recv after Unsubscribe.
	ErrUnsubscribed = errors.New("channel: unsubscribed")
	// ErrSlowConsumer is returned once by Recv after the subscription's
	// pending queue overflowed and messages were dropped; it is not
	// terminal: the next Recv returns the next queued message.
	ErrSlowConsumer = errors.New("channel: slow consumer, messages dropped")
	// ErrPublisherLost is returned once by Recv, in its place among the
	// messages, when the session with the publisher went down (it
	// restarted, or the network failed); it is not terminal: the engine
	// subscribes again, with backoff, whenever the publisher is back.
	ErrPublisherLost = errors.New("channel: publisher lost; subscribing again")
	// ErrResubscribed is returned once by Recv when the publisher admitted
	// the subscription again after ErrPublisherLost; messages published
	// meanwhile are lost, and the sequence numbers may start over (a
	// publisher that restarted counts from 1). It is not terminal.
	ErrResubscribed = errors.New("channel: subscribed again; messages published meanwhile are lost")
)

// Reason says why a publisher refused or ended a subscription. The values
// are on the wire and stable.
type Reason uint8

// Reasons.
const (
	// ReasonUnknownChannel: no channel of that name (or it was
	// unregistered).
	ReasonUnknownChannel Reason = 1
	// ReasonCapabilities: the subscriber's announced capabilities fail the
	// channel's SubscribeCaps, or it has no announcement.
	ReasonCapabilities Reason = 2
	// ReasonToken: the token is missing, malformed, untrusted, for someone
	// else or another channel, expired, not yet valid, revoked or
	// mis-signed (RejectError.Token says which).
	ReasonToken Reason = 3
	// ReasonSubnet: the channel's visibility hides it from the
	// subscriber's subnet.
	ReasonSubnet Reason = 4
	// ReasonRateLimited: too many failed requests from this peer.
	ReasonRateLimited Reason = 5
	// ReasonTooManySubscribers: the channel is full.
	ReasonTooManySubscribers Reason = 6
	// ReasonGroups: the subscriber's membership certificate names none of
	// the channel's SubscribeGroups, or it has none.
	ReasonGroups Reason = 7

	reasonMax = ReasonGroups
)

var reasonNames = [...]string{
	ReasonUnknownChannel:     "unknown channel",
	ReasonCapabilities:       "unauthorized: capabilities",
	ReasonToken:              "unauthorized: token",
	ReasonSubnet:             "unauthorized: subnet",
	ReasonRateLimited:        "rate limited",
	ReasonTooManySubscribers: "too many subscribers",
	ReasonGroups:             "unauthorized: groups",
}

// String returns the reason in words.
func (r Reason) String() string {
	if r == 0 || r > reasonMax {
		return fmt.Sprintf("reason(%d)", uint8(r))
	}
	return reasonNames[r]
}

// sentinel returns the sentinel error the reason matches.
func (r Reason) sentinel() error {
	switch r {
	case ReasonUnknownChannel:
		return ErrUnknownChannel
	case ReasonCapabilities, ReasonToken, ReasonSubnet, ReasonGroups:
		return ErrUnauthorized
	case ReasonRateLimited:
		return ErrRateLimited
	case ReasonTooManySubscribers:
		return ErrTooManySubscribers
	}
	return ErrMalformed
}

// TokenProblem says what was wrong with a token in a ReasonToken rejection.
// The values are on the wire and stable.
type TokenProblem uint8

// Token problems; each matches an error with errors.Is.
const (
	TokenOK              TokenProblem = iota // no token problem (other reasons)
	TokenMissing                             // ErrTokenRequired
	TokenMalformed                           // identity.ErrTokenMalformed
	TokenBadSignature                        // identity.ErrTokenSignature
	TokenExpired                             // identity.ErrTokenExpired
	TokenNotYetValid                         // identity.ErrTokenNotYetValid
	TokenUntrustedIssuer                     // identity.ErrTokenUntrustedIssuer
	TokenWrongSubject                        // identity.ErrTokenWrongSubject
	TokenNotPermitted                        // identity.ErrTokenNotPermitted
	TokenRevoked                             // ErrTokenRevoked
	tokenProblemMax      = TokenRevoked
)

var tokenProblemErrs = [...]error{
	TokenMissing:         ErrTokenRequired,
	TokenMalformed:       identity.ErrTokenMalformed,
	TokenBadSignature:    identity.ErrTokenSignature,
	TokenExpired:         identity.ErrTokenExpired,
	TokenNotYetValid:     identity.ErrTokenNotYetValid,
	TokenUntrustedIssuer: identity.ErrTokenUntrustedIssuer,
	TokenWrongSubject:    identity.ErrTokenWrongSubject,
	TokenNotPermitted:    identity.ErrTokenNotPermitted,
	TokenRevoked:         ErrTokenRevoked,
}

// Err returns the error the problem matches, or nil for TokenOK.
func (p TokenProblem) Err() error {
	if p == TokenOK || p > tokenProblemMax {
		return nil
	}
	return tokenProblemErrs[p]
}

// tokenProblemOf maps a token check error to its problem.
func tokenProblemOf(err error) TokenProblem {
	for p := TokenMissing; p <= tokenProblemMax; p++ {
		if errors.Is(err, tokenProblemErrs[p]) {
			return p
		}
	}
	return TokenMalformed
}

// RejectError is a publisher's refusal of a subscribe request, or its
// ending of a subscription (Evicted). Use errors.As to read it, or
// errors.Is with ErrUnknownChannel, ErrUnauthorized, ErrRateLimited,
// ErrTooManySubscribers, and for token rejections the token sentinel
// (identity.ErrTokenExpired, ErrTokenRevoked, ...).
type RejectError struct {
	Publisher identity.NodeID
	Channel   string
	Reason    Reason
	Token     TokenProblem // set when Reason is ReasonToken
	Evicted   bool         // the subscription was accepted and later ended
}

// Error implements error.
func (e *RejectError) Error() string {
	verb := "rejected"
	if e.Evicted {
		verb = "ended"
	}
	s := fmt.Sprintf("channel: %s %q %s subscription: %s", e.Publisher.Short(), e.Channel, verb, e.Reason)
	if err := e.Token.Err(); err != nil {
		s += " (" + err.Error() + ")"
	}
	return s
}

// Unwrap returns the sentinel of the reason and, for token problems, the
// token error.
func (e *RejectError) Unwrap() []error {
	if err := e.Token.Err(); err != nil {
		return []error{e.Reason.sentinel(), err}
	}
	return []error{e.Reason.sentinel()}
}
