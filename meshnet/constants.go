package meshnet

import "time"

// Network is the name of the network of every Addr.
const Network = "netmesh"

// ResetCodeClosed is the reset code a Conn sends when it is closed with
// data from the peer unread, when the peer sends more after Close, or when
// the peer neither closes nor writes within the linger time: the peer's
// calls fail as a TCP peer's do after a RST.
const ResetCodeClosed uint32 = 1

const (
	// maxWriteMessage bounds the stream message one Write makes, bytes.
	// Messages are the unit Read buffers when a caller's slice is
	// shorter; 64 KiB amortises the per-message cost over many fragments
	// and stays far below the stream's default window (4 MiB), so many
	// are in flight.
	maxWriteMessage = 64 << 10
	// maxKeptReadBuffer bounds the read buffer a Conn keeps between
	// messages, bytes: a peer may send messages up to the stream's
	// MaxMessageSize, and a buffer grown for one such message is dropped
	// once read rather than held for the life of the Conn.
	maxKeptReadBuffer = maxWriteMessage
	// datagramRetryMin and datagramRetryMax bound the back-off of a
	// WriteTo whose datagram met a full send queue. The socket queue has
	// no notification; it drains in well under a millisecond at loopback
	// rates, and 10 ms keeps a blocked writer responsive on slow links.
	datagramRetryMin = 100 * time.Microsecond
	datagramRetryMax = 10 * time.Millisecond
)

// lingerTimeout bounds how long a closed Conn's stream may take to
// finish: the peer's acknowledgement of the data and its own end of
// stream. 30 s is the stream's default close timeout; a peer that takes
// longer is reset. A variable so tests can shrink it.
var lingerTimeout = 30 * time.Second
