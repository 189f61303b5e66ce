package stream

import "time"

// Reliability is the delivery mode of a stream.
type Reliability uint8

const (
	// Reliable streams deliver every message exactly once, whole and in
	// order, retransmitting lost fragments under congestion and flow
	// control.
	Reliable Reliability = iota
	// Unreliable streams deliver whole messages at most once, never older
	// than a message already delivered; a message with a lost fragment is
	// dropped and counted. They are not congestion controlled: the Link's
	// socket queue is their only back-pressure.
	Unreliable
)

// String returns "reliable" or "unreliable".
func (r Reliability) String() string {
	if r == Unreliable {
		return "unreliable"
	}
	return "reliable"
}

// Config configures one stream. The zero value is a reliable stream with
// the documented defaults.
type Config struct {
	// Reliability is the delivery mode; the peer learns it from the first
	// frame. Zero means Reliable. For an accepted stream it is the peer's
	// choice and this field is ignored.
	Reliability Reliability

	// SendWindow bounds the memory of messages sent but not yet
	// acknowledged, in bytes of buffer capacity (a message is charged its
	// fragments' pooled buffers, at least its own size). Send returns
	// ErrBackpressure when a message does not fit. A message larger than
	// the window is accepted only into an empty window, so one message of
	// MaxMessageSize always goes through. 0 means DefaultSendWindow.
	SendWindow int
	// SendWindowMessages bounds messages sent but not yet acknowledged.
	// 0 means no limit besides SendWindow.
	SendWindowMessages int
	// RecvWindow bounds received data the application has not read yet, in
	// bytes of buffer capacity: the stream advertises only what fits, so a
	// slow reader stalls its sender. The message being reassembled is
	// exempt (up to MaxMessageSize), so a message larger than the window
	// still arrives. 0 means DefaultRecvWindow; values below 48 KiB (the
	// window a sender assumes before the first ACK) are raised to it.
	RecvWindow int
	// MaxMessageSize bounds one message, sent or received. Send fails with
	// ErrTooLarge beyond it; a peer that sends more is reset with
	// CodeTooLarge. 0 means DefaultMaxMessageSize; at most 32 MiB.
	MaxMessageSize int
	// CloseTimeout bounds how long Close waits for the peer to acknowledge
	// all data; then the stream is reset with CodeCloseTimeout.
	// 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration
}

func (c Config) withDefaults() Config {
	c.SendWindow = orDefault(c.SendWindow, DefaultSendWindow)
	c.RecvWindow = max(orDefault(c.RecvWindow, DefaultRecvWindow), initialWindowFragments*chunkSize)
	c.MaxMessageSize = orDefault(c.MaxMessageSize, DefaultMaxMessageSize)
	c.CloseTimeout = orDefault(c.CloseTimeout, DefaultCloseTimeout)
	c.MaxMessageSize = min(c.MaxMessageSize, 1<<sizeClassMaxShift)
	return c
}

// MuxConfig configures a Mux. The zero value of every field is a
// documented default.
type MuxConfig struct {
	// Accept configures the streams the peer opens (their Reliability is
	// the peer's choice).
	Accept Config
	// AcceptBacklog bounds peer streams waiting for Accept; beyond it new
	// peer streams are refused with CodeRefused and counted. With an
	// AcceptLink the Link applies it instead (package mesh: to each stream
	// listener's queue, across all peers). 0 means DefaultAcceptBacklog.
	AcceptBacklog int
	// MaxStreams bounds concurrently open peer-initiated streams; beyond it
	// new peer streams are refused with CodeRefused and counted.
	// 0 means DefaultMaxStreams.
	MaxStreams int
	// RecvBudget bounds the bytes all streams of the Mux hold for the
	// application: out-of-order fragments, unread messages and messages
	// in reassembly. Each stream's window is at most its share; at the
	// budget, windows stop opening (see docs/STREAMS.md).
	// 0 means DefaultRecvBudget.
	RecvBudget int
	// SendBudget bounds the bytes all reliable streams of the Mux hold
	// for sending (messages sent and not yet acknowledged, counted like
	// Config.SendWindow): Send returns ErrBackpressure when a message
	// would take the Mux beyond it, unless the Mux holds nothing, so one
	// message of MaxMessageSize always goes through; SendBlocking waits
	// for its turn. 0 means DefaultSendBudget.
	SendBudget int
	// IdleTimeout resets a stream the peer opened with CodeIdle when, for
	// this long, nothing arrived for it (a frame of any kind) and the
	// application sent nothing on it (Send, Close) while it waits on the
	// peer (to end its side, or to acknowledge data): a peer cannot park
	// streams, and the goroutines that read them, by going silent.
	// Streams that wait only on the application (the peer ended its side
	// and acknowledged everything) and streams this side opened are the
	// application's to bound. A protocol whose peer-opened streams may
	// rightly stay silent longer must send within it. Counted in
	// MuxStats.IdleResets. 0 means DefaultIdleTimeout; a negative value
	// disables the timeout.
	IdleTimeout time.Duration

	// MinRTO is the floor of the retransmission timeout.
	// 0 means DefaultMinRTO.
	MinRTO time.Duration
	// MaxRTO caps the retransmission timeout's exponential back-off.
	// 0 means DefaultMaxRTO.
	MaxRTO time.Duration
	// InitialRTT seeds the RTT estimator; the mesh passes the session's
	// measured RTT when it has one. 0 means DefaultInitialRTT.
	InitialRTT time.Duration
	// MaxAckDelay bounds how long an ACK is held back.
	// 0 means DefaultMaxAckDelay.
	MaxAckDelay time.Duration
	// ReassemblyTimeout bounds how long an incomplete unreliable message is
	// kept. 0 means DefaultReassemblyTimeout.
	ReassemblyTimeout time.Duration
	// LinkRetry is how long the engine waits before resending after the
	// Link reported back-pressure. 0 means DefaultLinkRetry.
	LinkRetry time.Duration
	// PathProbeInterval is how long path-MTU discovery waits after a
	// completed search or a black-hole fallback before searching again
	// (only with a ProbeLink). 0 means DefaultPathProbeInterval.
	PathProbeInterval time.Duration

	finAckDelay time.Duration // tests lengthen it; 0 means finAckDelay
}

func (c MuxConfig) withDefaults() MuxConfig {
	c.Accept = c.Accept.withDefaults()
	c.AcceptBacklog = orDefault(c.AcceptBacklog, DefaultAcceptBacklog)
	c.MaxStreams = orDefault(c.MaxStreams, DefaultMaxStreams)
	c.RecvBudget = orDefault(c.RecvBudget, DefaultRecvBudget)
	c.SendBudget = orDefault(c.SendBudget, DefaultSendBudget)
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	c.MinRTO = orDefault(c.MinRTO, DefaultMinRTO)
	c.MaxRTO = orDefault(c.MaxRTO, DefaultMaxRTO)
	c.InitialRTT = orDefault(c.InitialRTT, DefaultInitialRTT)
	c.MaxAckDelay = orDefault(c.MaxAckDelay, DefaultMaxAckDelay)
	c.ReassemblyTimeout = orDefault(c.ReassemblyTimeout, DefaultReassemblyTimeout)
	c.LinkRetry = orDefault(c.LinkRetry, DefaultLinkRetry)
	c.PathProbeInterval = orDefault(c.PathProbeInterval, DefaultPathProbeInterval)
	c.finAckDelay = orDefault(c.finAckDelay, finAckDelay)
	return c
}

// orDefault returns def for a zero or negative v.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
