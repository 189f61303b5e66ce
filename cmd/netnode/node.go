package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/netmesh/netmesh/bootstrap"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/daemon"
	"github.com/netmesh/netmesh/mesh"
	"github.com/netmesh/netmesh/rpc"
)

// The results of the control methods. Their JSON field names are what
// `--json` prints: keep them stable.

// statusInfo is the result of "status".
type statusInfo struct {
	NodeID              string            `json:"node_id"`
	Name                string            `json:"name"` // "" when the node has none
	PublicKey           string            `json:"public_key"`
	ListenAddrs         []string          `json:"listen_addrs"`
	IOMode              string            `json:"io_mode"`
	Relay               bool              `json:"relay"`
	UptimeSeconds       float64           `json:"uptime_seconds"`
	PeersUp             int               `json:"peers_up"`
	PeersKnown          int               `json:"peers_known"`
	Drops               map[string]uint64 `json:"drops"`
	SendBackpressure    uint64            `json:"send_backpressure"`
	HandshakesInitiated uint64            `json:"handshakes_initiated"`
	SuiteFallbacks      uint64            `json:"suite_fallbacks"`
	HandshakesCompleted uint64            `json:"handshakes_completed"`
	HandshakesProcessed uint64            `json:"handshakes_processed"`
	CookiesSent         uint64            `json:"cookies_sent"`
	RelayedPackets      uint64            `json:"relayed_packets"`
	Subnet              string            `json:"subnet"`   // "" when the node has none
	Channels            []string          `json:"channels"` // channels this node publishes
	MDNS                bool              `json:"mdns"`
	NATCompiled         bool              `json:"nat_compiled"`
	Version             string            `json:"version"`
	RPCServices         []string          `json:"rpc_services"` // the built-in services this node serves
}

// peerInfo describes one peer: the result of "health", an element of
// "peers".
type peerInfo struct {
	NodeID string `json:"node_id"` // "" for a configured peer never reached that has no pinned id
	// Name is the name the node's announcement claims; "" if none. A
	// name is a label, not an identity.
	Name string `json:"name"`
	// Configured is the dial string of the bootstrap peer (peers in the
	// config) this is; "" for a peer that is not one.
	Configured   string     `json:"configured"`
	Up           bool       `json:"up"`
	Path         string     `json:"path"`     // direct, relayed or none
	Via          string     `json:"via"`      // relay NodeID when relayed, else ""
	Endpoint     string     `json:"endpoint"` // ip:port when direct, else ""
	PathReason   string     `json:"path_reason"`
	RTTMs        float64    `json:"rtt_ms"` // 0 until measured
	TxBytes      uint64     `json:"tx_bytes"`
	RxBytes      uint64     `json:"rx_bytes"`
	TxPackets    uint64     `json:"tx_packets"`
	RxPackets    uint64     `json:"rx_packets"`
	Handshakes   uint64     `json:"handshakes"`
	LastSeen     *time.Time `json:"last_seen"` // null if nothing ever arrived
	SessionAgeMs float64    `json:"session_age_ms"`
	CipherSuite  string     `json:"cipher_suite"` // the session's AEAD: AESGCM or ChaChaPoly; "" without one
	StreamMTU    int        `json:"stream_mtu"`   // confirmed stream frame size; 0 before the first stream
}

// peersResult is the result of "peers".
type peersResult struct {
	NodeID string     `json:"node_id"`
	Peers  []peerInfo `json:"peers"`
}

// nodeParams are the parameters of "health".
type nodeParams struct {
	Node string `json:"node"`
}

// pingParams are the parameters of "ping".
type pingParams struct {
	Node       string `json:"node"`
	Count      int    `json:"count"`
	IntervalMs int    `json:"interval_ms"`
}

// pingReply is one intermediate result of "ping".
type pingReply struct {
	Seq   int     `json:"seq"`
	RTTMs float64 `json:"rtt_ms"` // 0 when Error is set
	Error string  `json:"error"`
}

// pingSummary is the final result of "ping".
type pingSummary struct {
	NodeID   string  `json:"node_id"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	MinMs    float64 `json:"min_ms"`
	AvgMs    float64 `json:"avg_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// Bounds of the ping method.
const (
	maxPingCount    = 100000
	minPingInterval = 10 * time.Millisecond
	minPingTimeout  = 2 * time.Second // a probe gives up after max(this, interval)
)

// node answers the control methods for a running mesh.
type node struct {
	m       *mesh.Mesh
	rc      *runConfig
	started time.Time
	rpc     *rpc.Client     // makes the calls of "call"
	srv     *rpc.Server     // serves the built-in services; nil with rpc_builtin = false
	tasks   *taskNode       // the worker and submitter; nil until started
	daemons *daemon.Runtime // the daemon runtime; nil until started
	// keeper keeps the sessions with the bootstrap peers; nil until
	// the node runs.
	keeper *bootstrap.Keeper
}

// methods returns the control methods the node serves.
func (n *node) methods() map[string]method {
	m := map[string]method{
		"status":    func(context.Context, json.RawMessage, func(any) error) (any, error) { return n.status(), nil },
		"peers":     func(context.Context, json.RawMessage, func(any) error) (any, error) { return n.peers(), nil },
		"health":    n.health,
		"ping":      n.ping,
		"find":      n.find,
		"nodes":     n.nodes,
		"publish":   n.publish,
		"subscribe": n.subscribe,
		"nat":       n.nat,
		"call":      n.call,
	}
	if n.tasks != nil {
		maps.Copy(m, n.taskMethods())
	}
	if n.daemons != nil {
		maps.Copy(m, n.daemonMethods())
	}
	maps.Copy(m, n.memberMethods())
	return m
}

func (n *node) status() statusInfo {
	st := n.m.Stats()
	si := statusInfo{
		NodeID:              st.NodeID.String(),
		Name:                n.rc.name,
		PublicKey:           hex.EncodeToString(n.m.Identity().PublicKey()),
		ListenAddrs:         []string{},
		IOMode:              st.IOMode,
		Relay:               n.rc.relay,
		UptimeSeconds:       time.Since(n.started).Seconds(),
		PeersKnown:          len(st.Peers),
		Drops:               st.Drops,
		SendBackpressure:    st.SendBackpressure,
		HandshakesInitiated: st.HandshakesInitiated,
		SuiteFallbacks:      st.SuiteFallbacks,
		HandshakesCompleted: st.HandshakesCompleted,
		HandshakesProcessed: st.HandshakesProcessed,
		CookiesSent:         st.CookiesSent,
		RelayedPackets:      st.Relayed,
		Channels:            n.rc.channelNames(),
		MDNS:                n.rc.mdns,
		NATCompiled:         natCompiled,
		Version:             buildVersion(),
		RPCServices:         n.rpcServices(),
	}
	if sub := n.subnet(); !sub.IsZero() {
		si.Subnet = sub.String()
	}
	if si.Drops == nil {
		si.Drops = map[string]uint64{}
	}
	for _, a := range st.ListenAddrs {
		si.ListenAddrs = append(si.ListenAddrs, a.String())
	}
	for _, p := range st.Peers {
		if p.Up {
			si.PeersUp++
		}
	}
	return si
}

// subnet returns the node's own subnet: the pinned one, else what the
// subnet policy derives from its announcement.
func (n *node) subnet() channel.SubnetID {
	if !n.rc.subnet.IsZero() {
		return n.rc.subnet
	}
	self, ok := n.m.Capabilities().Index().Lookup(n.m.ID())
	if !ok {
		return channel.SubnetID{}
	}
	return n.rc.policy.Subnet(self.Set)
}

// peers lists the peers, and the configured peers never reached.
func (n *node) peers() peersResult {
	st := n.m.Stats()
	res := peersResult{NodeID: st.NodeID.String(), Peers: []peerInfo{}}
	byID := make(map[string]*peerInfo, len(st.Peers))
	infos := make([]peerInfo, len(st.Peers))
	for i, ps := range st.Peers {
		infos[i] = n.peerInfo(ps)
		byID[infos[i].NodeID] = &infos[i]
	}
	var unreached []peerInfo
	n.configuredPeers(byID, &unreached, time.Now())
	res.Peers = append(append(res.Peers, infos...), unreached...)
	slices.SortStableFunc(res.Peers, func(a, b peerInfo) int {
		if (a.NodeID == "") != (b.NodeID == "") {
			return cmp.Compare(b.NodeID, a.NodeID) // unknown ids last
		}
		return cmp.Compare(a.NodeID, b.NodeID)
	})
	return res
}

func newPeerInfo(ps mesh.PeerStats) peerInfo {
	pi := peerInfo{
		NodeID:       ps.ID.String(),
		Up:           ps.Up,
		Path:         ps.Path,
		PathReason:   ps.PathReason,
		RTTMs:        ms(ps.RTT),
		TxBytes:      ps.TxBytes,
		RxBytes:      ps.RxBytes,
		TxPackets:    ps.TxPackets,
		RxPackets:    ps.RxPackets,
		Handshakes:   ps.Handshakes,
		SessionAgeMs: ms(ps.SessionAge),
		StreamMTU:    ps.StreamMTU,
	}
	if ps.CipherSuite != 0 {
		pi.CipherSuite = ps.CipherSuite.String()
	}
	if !ps.Via.IsZero() {
		pi.Via = ps.Via.String()
	}
	if ps.Endpoint.IsValid() {
		pi.Endpoint = ps.Endpoint.String()
	}
	if !ps.LastSeen.IsZero() {
		t := ps.LastSeen.UTC()
		pi.LastSeen = &t
	}
	return pi
}

// ms converts d to fractional milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (n *node) health(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var params nodeParams
	if err := decodeParams(raw, &params); err != nil {
		return nil, err
	}
	p, err := n.reach(ctx, params.Node)
	if err != nil {
		return nil, err
	}
	return n.peerInfo(p.Stats()), nil
}

func (n *node) ping(ctx context.Context, raw json.RawMessage, more func(any) error) (any, error) {
	var params pingParams
	if err := decodeParams(raw, &params); err != nil {
		return nil, err
	}
	interval := time.Duration(params.IntervalMs) * time.Millisecond
	switch {
	case params.Count < 1 || params.Count > maxPingCount:
		return nil, errorf(codeBadRequest, "count %d: want 1 to %d", params.Count, maxPingCount)
	case interval < minPingInterval:
		return nil, errorf(codeBadRequest, "interval %v: want at least %v", interval, minPingInterval)
	}
	p, err := n.reach(ctx, params.Node)
	if err != nil {
		return nil, err
	}
	if !p.IsUp() {
		return nil, errorf(codeNodeDown, "node %s is down: %s", p.ID(), p.Stats().PathReason)
	}
	sum := pingSummary{NodeID: p.ID().String()}
	var total float64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := 1; seq <= params.Count; seq++ {
		if seq > 1 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-tick.C:
			}
		}
		pctx, cancel := context.WithTimeout(ctx, max(interval, minPingTimeout))
		rtt, err := n.m.Ping(pctx, p)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sum.Sent++
		reply := pingReply{Seq: seq}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = errors.New("timed out")
			}
			reply.Error = err.Error()
		} else {
			reply.RTTMs = ms(rtt)
			if sum.Received == 0 || reply.RTTMs < sum.MinMs {
				sum.MinMs = reply.RTTMs
			}
			sum.MaxMs = max(sum.MaxMs, reply.RTTMs)
			sum.Received++
			total += reply.RTTMs
		}
		if err := more(reply); err != nil {
			return nil, err
		}
	}
	if sum.Received > 0 {
		sum.AvgMs = total / float64(sum.Received)
	}
	return sum, nil
}

// decodeParams decodes a request's parameters strictly.
func decodeParams(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(codeBadRequest, "bad parameters: %v", err)
	}
	return nil
}

// nodeIDChars are the characters of a NodeID's string form.
const nodeIDChars = "abcdefghijklmnopqrstuvwxyz234567"
