package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/mesh/stream"
	"github.com/netmesh/netmesh/rpc"
)

// RPC: the call command, its control method "call", and the built-in
// services that `netnode run` serves unless rpc_builtin is false.

// The built-in services. They reveal nothing that the node does not
// already announce to the mesh, besides its version and uptime.
const (
	serviceInfo = "netnode.info" // nodeInfo as JSON; the request is ignored
	serviceEcho = "netnode.echo" // the request, unchanged
)

// Limits of the built-in rpc server: the services are small diagnostics,
// so a peer cannot make the node buffer much for them.
const (
	builtinMaxRequest    = 64 << 10
	builtinMaxConcurrent = 64
)

// anyNode is the node argument of call that picks any node advertising
// the service.
const anyNode = "any"

// Bounds of the call method. A request may be as large as an rpc server
// with default options accepts.
const (
	maxCallRequest = rpc.DefaultMaxRequestSize
	maxCallTimeout = time.Hour
)

// callOK is callResult.Status of a call that succeeded.
const callOK = "ok"

// callParams are the parameters of "call".
type callParams struct {
	Node      string `json:"node"` // NodeID or unique prefix; "" for any node that advertises Service
	Service   string `json:"service"`
	Request   []byte `json:"request"` // base64 in JSON
	TimeoutMs int64  `json:"timeout_ms"`
}

// callResult is the result of "call", for a call that failed too: Status
// says which.
type callResult struct {
	NodeID     string  `json:"node_id"` // the node called; "" if none could be chosen
	Service    string  `json:"service"`
	DurationMs float64 `json:"duration_ms"`
	// Status is "ok", or the kind of the rpc error: no_route,
	// no_responders, timeout, cancelled, server_error, transport,
	// invalid_request or circuit_open.
	Status string `json:"status"`
	// RPCStatus and RPCStatusName are the server's status code and its
	// name (server_error only); Message is the server's message or the
	// cause of the error.
	RPCStatus     uint16 `json:"rpc_status,omitempty"`
	RPCStatusName string `json:"rpc_status_name,omitempty"`
	Message       string `json:"message,omitempty"`
	// The reply: Reply when it is JSON; otherwise ReplyBytes (base64),
	// and ReplyText when it is UTF-8. An empty reply has none of them.
	Reply      json.RawMessage `json:"reply,omitempty"`
	ReplyBytes []byte          `json:"reply_bytes,omitempty"`
	ReplyText  string          `json:"reply_text,omitempty"`
}

// nodeInfo is the reply of netnode.info.
type nodeInfo struct {
	NodeID        string   `json:"node_id"`
	Version       string   `json:"version"`
	UptimeSeconds float64  `json:"uptime_seconds"`
	Capabilities  []string `json:"capabilities"` // the tags the node announces, sorted
}

// buildVersion is this binary's module version as the go command stamped
// it: a tag such as v1.2.0, a pseudo-version, or "(devel)".
var buildVersion = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
})

// serveBuiltin starts the node's rpc server with the built-in services,
// which it advertises as rpc: tags. The server has the rpc defaults, for
// the task layer that shares it (a batch of tasks is up to 512 KiB); the
// built-in services keep their own, smaller limits (builtinGuard).
func (n *node) serveBuiltin(log *slog.Logger) (*rpc.Server, error) {
	srv, err := rpc.NewServer(n.m, rpc.ServerOptions{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	guard := builtinGuard(make(chan struct{}, builtinMaxConcurrent))
	err = errors.Join(
		srv.Handle(serviceInfo, guard(func(context.Context, []byte) ([]byte, error) { return json.Marshal(n.info()) })),
		srv.Handle(serviceEcho, guard(func(_ context.Context, req []byte) ([]byte, error) { return req, nil })),
	)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("rpc: %w", err)
	}
	return srv, nil
}

// builtinGuard returns a wrapper that holds the built-in services to
// builtinMaxRequest bytes a request and builtinMaxConcurrent handlers at
// once (sem's capacity), answered like the rpc server's own limits.
func builtinGuard(sem chan struct{}) func(rpc.Handler) rpc.Handler {
	return func(h rpc.Handler) rpc.Handler {
		return func(ctx context.Context, req []byte) ([]byte, error) {
			if len(req) > builtinMaxRequest {
				return nil, rpc.Errorf(rpc.StatusTooLarge, "request of %d bytes exceeds %d", len(req), builtinMaxRequest)
			}
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			default:
				return nil, rpc.Errorf(rpc.StatusUnavailable, "the built-in services are at their concurrency limit")
			}
			return h(ctx, req)
		}
	}
}

// info answers netnode.info.
func (n *node) info() nodeInfo {
	ni := nodeInfo{
		NodeID:        n.m.ID().String(),
		Version:       buildVersion(),
		UptimeSeconds: time.Since(n.started).Seconds(),
		Capabilities:  []string{},
	}
	if self, ok := n.m.Capabilities().Index().Lookup(n.m.ID()); ok {
		ni.Capabilities = append(ni.Capabilities, self.Set.Tags...)
		slices.Sort(ni.Capabilities)
	}
	return ni
}

// rpcServices returns the built-in services this node serves, sorted
// (the task layer's services share the server, and are not listed).
func (n *node) rpcServices() []string {
	services := []string{}
	if n.srv != nil {
		for _, tag := range n.srv.Tags() {
			if s := strings.TrimPrefix(tag, rpc.TagPrefix); s == serviceInfo || s == serviceEcho {
				services = append(services, s)
			}
		}
	}
	return services
}

func (n *node) call(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var params callParams
	if err := decodeParams(raw, &params); err != nil {
		return nil, err
	}
	timeout := time.Duration(params.TimeoutMs) * time.Millisecond
	switch err := rpc.ValidService(params.Service); {
	case err != nil:
		return nil, errorf(codeBadRequest, "service %q: %v", params.Service, err)
	case timeout <= 0 || timeout > maxCallTimeout:
		return nil, errorf(codeBadRequest, "timeout %v: want 1ms to %v", timeout, maxCallTimeout)
	case len(params.Request) > maxCallRequest:
		return nil, errorf(codeBadRequest, "request of %d bytes: at most %d", len(params.Request), maxCallRequest)
	}
	var id identity.NodeID
	if params.Node != "" {
		var err error
		if id, _, err = n.findNode(params.Node); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	var err error
	if params.Node == "" {
		// Pick and Call rather than CallService, so that the result can
		// name the node that answered; a failure is reported, not failed
		// over.
		id, err = n.rpc.Pick(params.Service)
	}
	var reply []byte
	if err == nil {
		reply, err = n.rpc.Call(ctx, id, params.Service, params.Request)
	}
	res := callResult{Service: params.Service, DurationMs: ms(time.Since(start)), Status: callOK}
	if !id.IsZero() {
		res.NodeID = id.String()
	}
	var re *rpc.Error
	switch {
	case errors.As(err, &re):
		res.Status = strings.ReplaceAll(re.Kind.String(), " ", "_")
		if re.Kind == rpc.KindServer {
			res.RPCStatus, res.RPCStatusName, res.Message = uint16(re.Status), re.Status.String(), re.Message
		} else if re.Err != nil {
			res.Message = re.Err.Error()
		}
		var rst *stream.ResetError
		if errors.As(err, &rst) && rst.Remote && rst.Code == stream.CodeRefused {
			res.Message += " (the node refused the call: it serves no rpc, or it is overloaded)"
		}
	case err != nil:
		return nil, err
	case json.Valid(reply):
		res.Reply = reply
	default:
		res.ReplyBytes = reply
		if utf8.Valid(reply) {
			res.ReplyText = string(reply)
		}
	}
	return res, nil
}

// err describes a call that failed in one line: the service and node,
// the rpc error kind, and the server's status.
func (r callResult) err() error {
	var b strings.Builder
	fmt.Fprintf(&b, "call %s", r.Service)
	if r.NodeID != "" {
		fmt.Fprintf(&b, " on %s", r.NodeID)
	}
	fmt.Fprintf(&b, ": %s", strings.ReplaceAll(r.Status, "_", " "))
	if r.RPCStatusName != "" {
		fmt.Fprintf(&b, " %d (%s)", r.RPCStatus, r.RPCStatusName)
	}
	if r.Message != "" {
		fmt.Fprintf(&b, ": %s", r.Message)
	}
	if r.Status == "no_responders" {
		fmt.Fprintf(&b, ": no other node advertises %s%s (netnode find %s%s)", rpc.TagPrefix, r.Service, rpc.TagPrefix, r.Service)
	}
	return errors.New(b.String())
}

func newCall() *cobra.Command {
	var o clientOpts
	var timeout time.Duration
	var rawReq bool
	cmd := &cobra.Command{
		Use:   "call <node|any> <service> [request]",
		Short: "Call an RPC service on a node, or on any node that advertises it",
		Long: `Make the running node call an RPC service and print the reply: pretty JSON
when the reply is JSON, its bytes unchanged otherwise.

The node is a NodeID or a unique prefix of one (a peer, or a node in the
capability index), or "any": the node picks one of the other nodes that
advertise the service (the capability tag rpc:<service>), preferring nodes
that are up, online, least busy and direct, and names it in the output. A
call to "any" that fails is not retried on another node.

The request is JSON, checked before it is sent (use --raw to send it as
is), "-" to read it from standard input (at most 1 MiB), or nothing for an
empty request. --timeout is the call's deadline; it travels with the request
to the server.

Every netnode serves netnode.info (its NodeID, version, uptime and
capability tags) and netnode.echo (the request back), unless run with
rpc_builtin = false.

With --json, the output is one object: node_id, service, duration_ms,
status ("ok" or the error kind), the reply (reply when it is JSON, else
reply_bytes in base64 and reply_text), and for a server error rpc_status,
rpc_status_name and message. The exit code is 1 when the call fails, with
one line on standard error naming the error kind and the server's status.`,
		Example: `  netnode call any netnode.info
  netnode call 5dnyl452 netnode.echo '{"hello": "mesh"}' --json
  netnode call any wordcount --raw 'count these words'
  netnode call any jobs.submit - --timeout 1m < job.json`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rpc.ValidService(args[1]); err != nil {
				return usageError{fmt.Errorf("service %q: want 1 to %d characters of a-z 0-9 - : . _ /", args[1], rpc.MaxServiceLen)}
			}
			if timeout < time.Millisecond || timeout > maxCallTimeout {
				return usageError{fmt.Errorf("--timeout %v: want 1ms to %v", timeout, maxCallTimeout)}
			}
			req, err := callRequest(cmd.InOrStdin(), args[2:], rawReq)
			if err != nil {
				return err
			}
			params := callParams{Service: args[1], Request: req, TimeoutMs: timeout.Milliseconds()}
			if args[0] != anyNode {
				params.Node = args[0]
			}
			// The node ends the call at its deadline; the extra time
			// covers the control socket.
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout+requestTimeout)
			defer cancel()
			raw, err := o.call(ctx, "call", params, nil)
			if err != nil {
				return err
			}
			var res callResult
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case o.json:
				fmt.Fprintf(out, "%s\n", raw)
			case res.Status == callOK:
				if err := printReply(out, res); err != nil {
					return err
				}
			}
			if res.Status != callOK {
				return res.err()
			}
			return nil
		},
	}
	o.addFlags(cmd)
	f := cmd.Flags()
	f.DurationVar(&timeout, "timeout", requestTimeout, "deadline of the call")
	f.BoolVar(&rawReq, "raw", false, "send the request as is, without checking that it is JSON")
	return cmd
}

// callRequest returns the request body of call: the optional argument, or
// standard input for "-".
func callRequest(stdin io.Reader, args []string, raw bool) ([]byte, error) {
	if len(args) == 0 {
		return nil, nil
	}
	req := []byte(args[0])
	if args[0] == "-" {
		var err error
		if req, err = io.ReadAll(io.LimitReader(stdin, maxCallRequest+1)); err != nil {
			return nil, err
		}
		if len(req) > maxCallRequest {
			return nil, usageError{fmt.Errorf("standard input is larger than %d bytes, the largest request", maxCallRequest)}
		}
	}
	if !raw {
		if err := json.Unmarshal(req, new(json.RawMessage)); err != nil {
			return nil, usageError{fmt.Errorf("request is not JSON (%v): quote it for the shell, or pass --raw to send it as is", err)}
		}
	}
	return req, nil
}

// printReply prints a successful call's reply: indented JSON, or the
// bytes as they came.
func printReply(out io.Writer, res callResult) error {
	if res.Reply == nil {
		_, err := out.Write(res.ReplyBytes)
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, res.Reply, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(out)
	return err
}
