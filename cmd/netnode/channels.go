package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/capability"
	"github.com/netmesh/netmesh/channel"
	"github.com/netmesh/netmesh/identity"
)

// Channels: the pub, sub and token commands and the control methods
// "publish" and "subscribe".

// Error codes of the channel methods.
const (
	codeUnknownChannel = "unknown_channel" // this node does not publish the channel
	codeUnauthorized   = "unauthorized"    // this node fails its own channel's publish_caps
	codeRejected       = "rejected"        // the publisher refused or ended the subscription
)

// publishParams are the parameters of "publish". Payload is base64 in
// JSON.
type publishParams struct {
	Channel string `json:"channel"`
	Payload []byte `json:"payload"`
}

// publishFailure is one subscriber a publish did not reach.
type publishFailure struct {
	NodeID string `json:"node_id"`
	Error  string `json:"error"`
}

// publishResult is the result of "publish": channel.PublishReport.
type publishResult struct {
	Channel   string           `json:"channel"`
	Seq       uint64           `json:"seq"`
	Attempted int              `json:"attempted"`
	Delivered int              `json:"delivered"`
	Failures  []publishFailure `json:"failures"`
}

// subscribeParams are the parameters of "subscribe".
type subscribeParams struct {
	Node    string `json:"node"`    // the publisher: NodeID or unique prefix
	Channel string `json:"channel"` // channel name
	Token   string `json:"token"`   // PermissionToken text form, or ""
	Count   int    `json:"count"`   // stop after this many messages; 0 never
}

// subEvent is one intermediate result of "subscribe": a message, a note
// that messages were dropped because the subscriber fell behind, or that
// the publisher was lost (its session went down: it restarted, or the
// network failed) and admitted the subscription again.
type subEvent struct {
	Kind      string `json:"kind"` // "message", "dropped", "lost" or "resubscribed"
	Publisher string `json:"publisher"`
	Channel   string `json:"channel"`
	Seq       uint64 `json:"seq"`            // 0 for "dropped"
	Payload   []byte `json:"payload"`        // base64 in JSON
	Text      string `json:"text,omitempty"` // the payload, when it is UTF-8
}

// subSummary is the final result of "subscribe", sent once Count messages
// arrived.
type subSummary struct {
	Publisher string `json:"publisher"`
	Channel   string `json:"channel"`
	Received  uint64 `json:"received"` // messages queued for this subscriber
	Dropped   uint64 `json:"dropped"`  // dropped because the subscriber fell behind
	Lost      uint64 `json:"lost"`     // missing from the publisher's sequence
}

func (n *node) publish(ctx context.Context, raw json.RawMessage, _ func(any) error) (any, error) {
	var params publishParams
	if err := decodeParams(raw, &params); err != nil {
		return nil, err
	}
	if err := channel.ValidateName(params.Channel); err != nil {
		return nil, errorf(codeBadRequest, "%v", err)
	}
	rep, err := n.m.Publish(ctx, params.Channel, params.Payload)
	switch {
	case errors.Is(err, channel.ErrUnknownChannel):
		return nil, errorf(codeUnknownChannel, "this node does not publish channel %q (add it to channels in the config; netnode status lists them)", params.Channel)
	case errors.Is(err, channel.ErrTooLarge):
		return nil, errorf(codeBadRequest, "%v", err)
	case errors.Is(err, channel.ErrUnauthorized):
		return nil, errorf(codeUnauthorized, "this node may not publish on %q: %v (check the channel's publish_caps)", params.Channel, err)
	case err != nil:
		return nil, err
	}
	res := publishResult{Channel: params.Channel, Seq: rep.Seq, Attempted: rep.Attempted, Delivered: rep.Delivered, Failures: []publishFailure{}}
	for _, f := range rep.Failures {
		res.Failures = append(res.Failures, publishFailure{NodeID: f.Peer.String(), Error: f.Err.Error()})
	}
	return res, nil
}

func (n *node) subscribe(ctx context.Context, raw json.RawMessage, more func(any) error) (any, error) {
	var params subscribeParams
	if err := decodeParams(raw, &params); err != nil {
		return nil, err
	}
	if err := channel.ValidateName(params.Channel); err != nil {
		return nil, errorf(codeBadRequest, "%v", err)
	}
	if params.Count < 0 {
		return nil, errorf(codeBadRequest, "count %d: want 0 (no limit) or more", params.Count)
	}
	var tok *identity.PermissionToken
	if params.Token != "" {
		var err error
		if tok, err = identity.ParseToken(params.Token); err != nil {
			return nil, errorf(codeBadRequest, "token: %v", err)
		}
	}
	p, err := n.reach(ctx, params.Node)
	if err != nil {
		return nil, err
	}
	if !p.IsUp() {
		return nil, errorf(codeNodeDown, "no session with %s and connecting failed: %s", p.ID(), p.Stats().PathReason)
	}
	id := p.ID()
	sub, err := n.m.SubscribeChannel(ctx, id, params.Channel, tok)
	var rej *channel.RejectError
	switch {
	case errors.As(err, &rej):
		return nil, errorf(codeRejected, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, errorf(codeFailed, "publisher %s did not answer the subscribe request", id)
	case err != nil:
		return nil, err
	}
	defer sub.Unsubscribe()
	got := 0
	for msg, err := range sub.Messages(ctx) {
		ev := subEvent{Kind: "message", Publisher: id.String(), Channel: params.Channel, Payload: []byte{}}
		switch {
		case errors.Is(err, channel.ErrSlowConsumer):
			ev.Kind = "dropped"
		case errors.Is(err, channel.ErrPublisherLost):
			ev.Kind = "lost"
		case errors.Is(err, channel.ErrResubscribed):
			ev.Kind = "resubscribed"
		case errors.As(err, &rej):
			return nil, errorf(codeRejected, "%v", err)
		case err != nil:
			return nil, err
		default:
			ev.Seq, ev.Payload = msg.Seq, msg.Payload
			if utf8.Valid(msg.Payload) {
				ev.Text = string(msg.Payload)
			}
			got++
		}
		if err := more(ev); err != nil {
			return nil, err
		}
		if params.Count > 0 && got >= params.Count {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := sub.Stats()
	return subSummary{Publisher: id.String(), Channel: params.Channel, Received: st.Received, Dropped: st.Dropped, Lost: st.Lost}, nil
}

// findNode returns the node a user named, with its key: by NodeID, by a
// prefix of one that matches one node, or by the name one node claims
// (case does not matter), among the peers and the nodes of the capability
// index. A name is a label, not an identity: a name two nodes claim, or
// that is also the prefix of another node's NodeID, is refused as
// ambiguous.
func (n *node) findNode(arg string) (identity.NodeID, ed25519.PublicKey, error) {
	arg = strings.TrimSpace(arg)
	name := strings.ToLower(arg)
	idLen := len(identity.NodeID{}.String())
	isPrefix := name != "" && len(name) <= idLen && strings.Trim(name, nodeIDChars) == ""
	isName := capability.ValidateName(arg) == nil
	if !isPrefix && !isName {
		return identity.NodeID{}, nil, errorf(codeBadRequest, "%q is not a NodeID, a prefix of one, or a node name", arg)
	}
	if name == n.m.ID().String() {
		return identity.NodeID{}, nil, errorf(codeBadRequest, "%s is this node itself", name)
	}
	keys := make(map[identity.NodeID]ed25519.PublicKey)
	for _, p := range n.m.Peers() {
		keys[p.ID()] = p.PublicKey()
	}
	for _, c := range n.m.FindNodes(capability.Filter{}) {
		if !c.Self {
			keys[c.ID] = c.Key
		}
	}
	var found []identity.NodeID
	if isPrefix {
		for id := range keys {
			if strings.HasPrefix(id.String(), name) {
				found = append(found, id)
			}
		}
	}
	if isName {
		var named []identity.NodeID
		for _, c := range n.m.LookupName(arg) {
			if c.Self {
				return identity.NodeID{}, nil, errorf(codeBadRequest, "%q is this node's own name", arg)
			}
			named = append(named, c.ID)
		}
		switch {
		case len(named) > 1:
			return identity.NodeID{}, nil, errorf(codeAmbiguousNode, "%d nodes claim the name %q (%s): a name is a label, not an identity; give a NodeID", len(named), arg, shortIDs(named))
		case len(named) == 1 && (len(found) == 0 || len(found) == 1 && found[0] == named[0]):
			return named[0], keys[named[0]], nil
		case len(named) == 1:
			return identity.NodeID{}, nil, errorf(codeAmbiguousNode, "%q is the name of %s and the prefix of another NodeID: give the NodeID", arg, named[0].Short())
		}
	}
	switch len(found) {
	case 0:
		return identity.NodeID{}, nil, errorf(codeUnknownNode, "unknown node %s: no peer or node in the capability index has that NodeID or name (netnode nodes lists them)", arg)
	case 1:
		return found[0], keys[found[0]], nil
	}
	return identity.NodeID{}, nil, errorf(codeAmbiguousNode, "%q matches %d nodes (%s): give more of the NodeID", name, len(found), shortIDs(found))
}

// shortIDs lists ids by their short forms, sorted, as "abc..., def...".
func shortIDs(ids []identity.NodeID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.Short() + "..."
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

// maxPubInput bounds what pub reads from standard input: one payload.
const maxPubInput = channel.MaxPayloadSize

func newPub() *cobra.Command {
	var o clientOpts
	cmd := &cobra.Command{
		Use:   "pub <channel> <message>",
		Short: "Publish a message on a channel the running node publishes",
		Long: `Publish a message on a channel that the running node registered (the
channels key of its config), and print who it reached: the subscribers it
was meant for, those whose session accepted it, and why the others failed.
A message of "-" is read from standard input (at most 64 KiB). The exit code
is 1 if the channel is not the node's, or a subscriber failed.`,
		Example: `  netnode pub jobs 'start 42'
  date | netnode pub clock -`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := channel.ValidateName(args[0]); err != nil {
				return usageError{err}
			}
			payload := []byte(args[1])
			if args[1] == "-" {
				var err error
				if payload, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxPubInput+1)); err != nil {
					return err
				}
				if len(payload) > maxPubInput {
					return usageError{fmt.Errorf("standard input is larger than %d bytes, the largest message", maxPubInput)}
				}
			}
			var res publishResult
			if err := o.get(cmd, "publish", publishParams{Channel: args[0], Payload: payload}, &res); err != nil {
				return err
			}
			if !o.json {
				printPublish(cmd.OutOrStdout(), res)
			}
			if len(res.Failures) > 0 {
				return fmt.Errorf("%q: %d of %d subscribers not reached", res.Channel, len(res.Failures), res.Attempted)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

func printPublish(out io.Writer, res publishResult) {
	fmt.Fprintf(out, "%s #%d: %d subscribers, %d delivered, %d failed\n", res.Channel, res.Seq, res.Attempted, res.Delivered, len(res.Failures))
	if len(res.Failures) == 0 {
		return
	}
	tw := newTable(out)
	fmt.Fprintln(tw, "NODE ID\tERROR")
	for _, f := range res.Failures {
		fmt.Fprintf(tw, "%s\t%s\n", f.NodeID, f.Error)
	}
	tw.Flush()
}

func newSub() *cobra.Command {
	var o clientOpts
	var token string
	var count int
	cmd := &cobra.Command{
		Use:   "sub <node> <channel>",
		Short: "Subscribe the running node to another node's channel and print its messages",
		Long: `Subscribe the running node to a channel of another node (the publisher,
named by NodeID or a unique prefix, a peer or a node in the capability
index) and print each message on its own line as it arrives, until
interrupted or -n messages arrived. A message that is not UTF-8 prints as
base64:... With --json, each message is an object (kind, publisher,
channel, seq, payload in base64, text) and, with -n, a summary comes last.
Messages dropped because this subscriber fell behind are reported on
standard error, and so are the loss of the publisher (it restarted, or the
network failed) and the subscription's return: the node subscribes again
by itself, with backoff, whenever the publisher is back. The exit code is
1 if the publisher refuses or ends the subscription.`,
		Example: `  netnode sub 5dnyl452 jobs
  netnode sub 5dnyl452 secret --token "$(cat secret.token)" -n 1 --json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usageError{fmt.Errorf("-n %d: want 0 (no limit) or more", count)}
			}
			if err := channel.ValidateName(args[1]); err != nil {
				return usageError{err}
			}
			if token != "" {
				if _, err := identity.ParseToken(token); err != nil {
					return usageError{fmt.Errorf("--token: %w", err)}
				}
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			params := subscribeParams{Node: args[0], Channel: args[1], Token: token, Count: count}
			res, err := o.call(cmd.Context(), "subscribe", params, func(raw json.RawMessage) error {
				if o.json {
					_, err := fmt.Fprintf(out, "%s\n", raw)
					return err
				}
				var ev subEvent
				if err := json.Unmarshal(raw, &ev); err != nil {
					return err
				}
				switch ev.Kind {
				case "dropped":
					fmt.Fprintln(errOut, "netnode: warning: messages dropped: this subscriber fell behind")
					return nil
				case "lost":
					fmt.Fprintf(errOut, "netnode: publisher %s lost; subscribing again when it is back\n", ev.Publisher)
					return nil
				case "resubscribed":
					fmt.Fprintf(errOut, "netnode: subscribed again to %s; messages published meanwhile are lost\n", ev.Publisher)
					return nil
				}
				line := ev.Text
				if ev.Text == "" && len(ev.Payload) > 0 {
					line = "base64:" + base64.StdEncoding.EncodeToString(ev.Payload)
				}
				_, err := fmt.Fprintln(out, line)
				return err
			})
			if err != nil {
				return err
			}
			if o.json {
				fmt.Fprintf(out, "%s\n", res)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&token, "token", "", "permission token (text form, from netnode token issue) for a channel that requires one")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "exit after this many messages (0: run until interrupted)")
	return cmd
}

// permNames are the values of token issue --perm.
var permNames = map[string]identity.Permission{
	"subscribe":         identity.PermSubscribe,
	"publish":           identity.PermPublish,
	"subscribe+publish": identity.PermSubscribe | identity.PermPublish,
}

// tokenInfo is what token issue --json prints.
type tokenInfo struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`
	Perms     string    `json:"perms"`
	Channel   string    `json:"channel"`
	Prefix    bool      `json:"prefix"`
	NotBefore time.Time `json:"not_before"`
	Expiry    time.Time `json:"expiry"`
}

func newToken() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Issue permission tokens for channels that require one",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newTokenIssue())
	return cmd
}

func newTokenIssue() *cobra.Command {
	var (
		keyPath, to, name, perm string
		prefix, asJSON          bool
		ttl                     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Sign a token that lets one key subscribe to (or publish on) a channel",
		Long: `Issue a permission token signed by the key file (-k): it lets the node whose
public key is --to subscribe to (or publish on) --channel, or every channel
under it with --prefix, for --ttl. A channel with require_token accepts
tokens signed by its own node's key or by one of its token_issuers. The
token is bound to the subject's key: it is useless to anyone else, so it
may travel in the clear. --to takes the public key (netnode id prints it),
not the NodeID, which is a hash of the key.`,
		Example: `  netnode token issue -k /etc/netnode/node.key --to 9fef98de... --channel secret --ttl 24h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" || name == "" {
				return usageError{errors.New("--to and --channel are required")}
			}
			subject, err := parsePublicKey(to)
			if err != nil {
				return usageError{fmt.Errorf("--to: %w", err)}
			}
			perms, ok := permNames[perm]
			if !ok {
				return usageError{fmt.Errorf("--perm %q: want subscribe, publish or subscribe+publish", perm)}
			}
			if ttl < time.Second {
				return usageError{fmt.Errorf("--ttl %v: want at least 1s", ttl)}
			}
			issuer, err := loadKey(keyPath)
			if err != nil {
				return usageError{err}
			}
			now := time.Now()
			tok, err := identity.IssueToken(issuer, identity.TokenGrant{
				Subject: subject, Perms: perms, Channel: name, Prefix: prefix,
				NotBefore: now, Expiry: now.Add(ttl),
			})
			if err != nil {
				return usageError{err}
			}
			out := cmd.OutOrStdout()
			if !asJSON {
				fmt.Fprintln(out, tok)
				return nil
			}
			return json.NewEncoder(out).Encode(tokenInfo{
				Token: tok.String(), ID: hex.EncodeToString(tok.ID[:]),
				Issuer: hex.EncodeToString(tok.Issuer), Subject: hex.EncodeToString(tok.Subject),
				Perms: tok.Perms.String(), Channel: tok.Channel, Prefix: tok.Prefix,
				NotBefore: tok.NotBefore.UTC(), Expiry: tok.Expiry.UTC(),
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&keyPath, "key", "k", "node.key", "issuer key file")
	f.StringVar(&to, "to", "", "subject: the ed25519 public key (hex) of the node the token is for")
	f.StringVar(&name, "channel", "", "channel name, or name prefix with --prefix")
	f.BoolVar(&prefix, "prefix", false, "grant every channel whose name starts with --channel")
	f.StringVar(&perm, "perm", "subscribe", "subscribe, publish or subscribe+publish")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid, from now")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
