// Package channel is netmesh's publish/subscribe: a node registers named
// channels with an access policy (Config), other nodes subscribe and get an
// acknowledgement or a typed rejection (*RejectError), and every Publish
// fans out to the current authorised subscribers with a PublishReport.
//
// Access is decided by three things: the channel's Visibility between the
// publisher's and the subscriber's subnets (SubnetID, derived from announced
// capability tags by a shared SubnetPolicy), capability filters on the
// subscriber's announcement (SubscribeCaps) and on the publisher's own
// (PublishCaps), and optionally an identity.PermissionToken issued to the
// subscriber's key. Tokens are verified once on admission (through an
// identity.TokenCache); each publish re-checks only expiry and revocation,
// in a few nanoseconds and without allocating. A per-peer limiter answers
// storms of failing requests with RateLimited before any signature check.
//
// Subscribers receive through a Subscription with a bounded queue: a slow
// consumer loses messages (counted, and reported as ErrSlowConsumer), never
// memory.
//
// The Engine does not import the mesh: the node hands it channel messages
// (HandleMessage) and time (Tick), and lends it a Transport to send
// through and to look up peers. docs/CHANNELS.md describes the token and
// message byte formats, subnets, visibility, the limits and the security
// properties.
package channel
