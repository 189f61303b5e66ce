package main

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/dialaddr"
	"github.com/netmesh/netmesh/identity"
	"github.com/netmesh/netmesh/membership"
)

// The membership commands: ca (an offline authority), cert show, pair
// (and pair code) and revoke. docs/OPERATIONS.md, "Closed meshes".

func newCA() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Run a membership authority offline: create its key, sign certificates and revocations",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newCAInit(), newCASign(), newCARevoke())
	return cmd
}

func newCAInit() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create an authority key file (mode 0600) and print its public key",
		Long: `Create the key of a membership authority. Whoever holds it can admit any
node to the mesh: keep it off the nodes (on an offline machine, or on one
node that pairs others, membership.authority_key), readable by its owner
only. Nodes trust it by its public key (membership.authorities).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := identity.Generate()
			if err != nil {
				return err
			}
			if err := id.Save(path); err != nil {
				return usageError{err}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "authority key  %x\nkey file       %s\n", []byte(id.PublicKey()), path)
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "key", "k", "ca.key", "authority key file to create")
	return cmd
}

func newCASign() *cobra.Command {
	var (
		keyPath, name, groups, out string
		validFor                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "sign KEYFILE|PUBKEY",
		Short: "Sign a membership certificate for a node's key",
		Long: `Sign a certificate that admits the node with the given key (its key file,
or its public key in hex as netnode id prints it) to the mesh, named --name,
in --groups, valid from now for --valid-for (at most 366 days). Given a key
file, the certificate is written next to it (node.key: node.cert), where
netnode run finds it; given a public key, to --out or standard output.`,
		Example: `  netnode ca sign -k ca.key --name gpu-1 --groups gpu,workers --valid-for 720h /etc/netnode/node.key
  netnode ca sign -k ca.key --name laptop --valid-for 168h 9fef98de... > laptop.cert`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, certPath, err := subjectKey(args[0])
			if err != nil {
				return usageError{err}
			}
			if out != "" {
				certPath = out
			}
			ca, err := loadKey(keyPath)
			if err != nil {
				return usageError{err}
			}
			now := time.Now()
			c, err := identity.IssueCertificate(ca, identity.CertificateTemplate{
				NodeKey: key, Name: name, Groups: splitList(groups), NotBefore: now, NotAfter: now.Add(validFor),
			})
			if err != nil {
				return usageError{err}
			}
			if certPath == "" {
				b, err := c.MarshalPEM()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := identity.SaveCertificate(certPath, c); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "certificate for %s written to %s\n", identity.NodeIDFromKey(key), certPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&keyPath, "key", "k", "ca.key", "authority key file")
	f.StringVar(&name, "name", "", "the node's name: 1 to 64 characters of a-z, 0-9 and -_. (required)")
	f.StringVar(&groups, "groups", "", "the node's groups, comma separated (at most 8)")
	f.DurationVar(&validFor, "valid-for", membership.DefaultCertValidity, "validity from now (renewed online at two thirds)")
	f.StringVarP(&out, "out", "o", "", "certificate file to write (default: next to KEYFILE, or standard output)")
	cmd.MarkFlagRequired("name")
	return cmd
}

// subjectKey reads the node key of ca sign: a public key in hex, or a key
// file, whose certificate path it also returns.
func subjectKey(arg string) (ed25519.PublicKey, string, error) {
	if k, err := parsePublicKey(arg); err == nil {
		return k, "", nil
	}
	id, err := loadKey(arg)
	if err != nil {
		return nil, "", fmt.Errorf("%s is neither a public key (64 hex digits) nor a key file: %w", arg, err)
	}
	cert, _ := filesBeside(arg)
	return id.PublicKey(), cert, nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newCARevoke() *cobra.Command {
	var keyPath, out string
	cmd := &cobra.Command{
		Use:   "revoke PUBKEY",
		Short: "Sign the revocation of a node's key, to hand to a member with netnode revoke",
		Long: `Sign a revocation of every certificate the authority issued for the node
key (hex) until now. It is written to --out (appended, so one file can
collect several) or standard output; give it to any running member with
netnode revoke --file, which gossips it to the whole mesh.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := parsePublicKey(args[0])
			if err != nil {
				return usageError{err}
			}
			ca, err := loadKey(keyPath)
			if err != nil {
				return usageError{err}
			}
			r, err := identity.IssueRevocation(ca, key, time.Now())
			if err != nil {
				return err
			}
			b, err := identity.MarshalRevocationsPEM([]*identity.Revocation{r})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out != "" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			_, err = w.Write(b)
			return err
		},
	}
	cmd.Flags().StringVarP(&keyPath, "key", "k", "ca.key", "authority key file")
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to append the revocation to (default standard output)")
	return cmd
}

func newCert() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Show membership certificates",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newCertShow())
	return cmd
}

func newCertShow() *cobra.Command {
	var (
		keyPath string
		running bool
		o       clientOpts
	)
	cmd := &cobra.Command{
		Use:   "show [FILE]",
		Short: "Show a certificate file, the one next to the key, or (--node) the running node's membership",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if running {
				var info membershipInfo
				if err := o.get(cmd, "membership", nil, &info); err != nil || o.json {
					return err
				}
				printMembership(cmd.OutOrStdout(), info)
				return nil
			}
			path, _ := filesBeside(keyPath)
			if len(args) == 1 {
				path = args[0]
			}
			c, err := identity.LoadCertificate(path)
			if err != nil {
				return usageError{err}
			}
			info := describeCert(c)
			if o.json {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(info)
			}
			printCert(cmd.OutOrStdout(), info, time.Now())
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVarP(&keyPath, "key", "k", "node.key", "key file whose certificate to show (node.key: node.cert)")
	cmd.Flags().BoolVar(&running, "node", false, "ask the running node (membership mode, authorities, certificate, revocations)")
	return cmd
}

func printCert(out io.Writer, c *certInfo, now time.Time) {
	tw := newTable(out)
	fmt.Fprintf(tw, "name\t%s\n", c.Name)
	fmt.Fprintf(tw, "groups\t%s\n", strings.Join(c.Groups, ", "))
	fmt.Fprintf(tw, "node id\t%s\n", c.NodeID)
	fmt.Fprintf(tw, "node key\t%s\n", c.NodeKey)
	fmt.Fprintf(tw, "authority\t%s\n", c.Authority)
	fmt.Fprintf(tw, "valid\t%s to %s\n", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
	state := "valid"
	switch {
	case now.Before(c.NotBefore):
		state = "not yet valid"
	case !now.Before(c.NotAfter):
		state = "EXPIRED"
	case !now.Before(c.RenewAt):
		state = "valid, due for renewal"
	}
	fmt.Fprintf(tw, "state\t%s (renew from %s)\n", state, c.RenewAt.Format(time.RFC3339))
	tw.Flush()
}

func printMembership(out io.Writer, m membershipInfo) {
	mode := "open (any node that reaches this one may connect)"
	if m.Closed {
		mode = "closed (members only)"
	}
	tw := newTable(out)
	fmt.Fprintf(tw, "mesh\t%s\n", mode)
	fmt.Fprintf(tw, "authorities\t%s\n", strings.Join(m.Authorities, ", "))
	fmt.Fprintf(tw, "issuer\t%s\n", onOff(m.Issuer))
	fmt.Fprintf(tw, "revocations\t%d\n", m.Revocations)
	fmt.Fprintf(tw, "checked\t%d certificate signatures, %d from cache\n", m.Signatures, m.CacheHits)
	fmt.Fprintf(tw, "renewed\t%d, issued %d\n", m.Renewals, m.Issued)
	tw.Flush()
	if m.Certificate == nil {
		fmt.Fprintln(out, "certificate  none")
		return
	}
	printCert(out, m.Certificate, time.Now())
}

func newPair() *cobra.Command {
	var (
		keyPath, with, code, certPath string
	)
	cmd := &cobra.Command{
		Use:   "pair",
		Short: "Join a closed mesh with a one-time code, and keep the certificate next to the key",
		Long: `Pair this node's key (-k) with the node that handed out --code (netnode
pair code, on a node that holds the authority key), at --with
HOST:PORT[,id=NODEID]. Both prove that they know the code without sending
it; the issuer answers with this node's certificate, which is written next
to the key file (node.key: node.cert), where netnode run finds it. A code
works once, for a few minutes.`,
		Example: `  netnode pair -k /etc/netnode/node.key --with 192.0.2.10:7946 --code abcd-efgh-ijkl-mnop-qrst-uvwx-yz23-4567`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if with == "" || code == "" {
				return usageError{errors.New("--with and --code are required")}
			}
			da, err := dialaddr.Parse(with)
			if err != nil || da.Host == "" {
				return usageError{fmt.Errorf("--with %q: want HOST:PORT[,id=NODEID]", with)}
			}
			c, err := membership.ParseCode(code)
			if err != nil {
				return usageError{fmt.Errorf("--code: %w", err)}
			}
			id, err := loadKey(keyPath)
			if err != nil {
				return usageError{err}
			}
			if certPath == "" {
				certPath, _ = filesBeside(keyPath)
			}
			log, _ := newLogger(io.Discard, "", "")
			cert, err := pairAndSave(cmd.Context(), id, da, c, certPath, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "paired: certificate written to %s\n", certPath)
			printCert(out, describeCert(cert), time.Now())
			fmt.Fprintf(out, "run the node with its key; it trusts authority %x from the certificate\n", []byte(cert.Authority))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&keyPath, "key", "k", "node.key", "this node's key file")
	f.StringVar(&with, "with", "", "the issuing node, HOST:PORT[,id=NODEID] (required)")
	f.StringVar(&code, "code", "", "the pairing code (required)")
	f.StringVarP(&certPath, "out", "o", "", "certificate file to write (default: next to the key file)")
	cmd.AddCommand(newPairCode())
	return cmd
}

func newPairCode() *cobra.Command {
	var (
		o              clientOpts
		name, groups   string
		validFor, life time.Duration
	)
	cmd := &cobra.Command{
		Use:   "code",
		Short: "Hand out a one-time pairing code (on the running node that holds the authority key)",
		Long: `Ask the running node, which must hold an authority key
(membership.authority_key), for a one-time code that admits one new node
with a certificate named --name, in --groups, valid for --valid-for. The
code works once, until --ttl passes; give it to the new machine's
netnode pair over a channel you trust (it is the new node's ticket in).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res pairCodeResult
			p := pairCodeParams{Name: name, Groups: splitList(groups), ValidForSec: int64(validFor / time.Second), CodeLifetimeS: int64(life / time.Second)}
			if err := o.get(cmd, "pair-code", p, &res); err != nil || o.json {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "code     %s\nexpires  %s\n", res.Code, res.Expires.Format(time.RFC3339))
			addr := "HOST:PORT"
			if len(res.Addrs) > 0 {
				addr = res.Addrs[0]
			}
			fmt.Fprintf(out, "on the new node:\n  netnode pair -k node.key --with %s,id=%s --code %s\n", addr, res.NodeID, res.Code)
			return nil
		},
	}
	o.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the new node's name (required)")
	f.StringVar(&groups, "groups", "", "its groups, comma separated")
	f.DurationVar(&validFor, "valid-for", membership.DefaultCertValidity, "its certificate's validity")
	f.DurationVar(&life, "ttl", membership.DefaultCodeLifetime, "how long the code works")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newRevoke() *cobra.Command {
	var (
		o    clientOpts
		file string
	)
	cmd := &cobra.Command{
		Use:   "revoke [PUBKEY]",
		Short: "Revoke a node's membership: the running node signs it (authority key) or passes on --file, and the mesh drops the node",
		Long: `Revoke a member. With PUBKEY, the running node signs the revocation with
its authority key (membership.authority_key); with --file, it passes on
revocations signed offline (netnode ca revoke). Either way the revocation
is gossiped to every member, kept across restarts, and every member ends
its sessions with the node and refuses it from then on.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p revokeParams
			switch {
			case len(args) == 1 && file == "":
				p.Key = args[0]
			case len(args) == 0 && file != "":
				b, err := os.ReadFile(file)
				if err != nil {
					return usageError{err}
				}
				p.PEM = string(b)
			default:
				return usageError{errors.New("give a node's public key or --file, not both")}
			}
			var res revokeResult
			if err := o.get(cmd, "revoke", p, &res); err != nil || o.json {
				return err
			}
			for _, r := range res.Revocations {
				fmt.Fprintln(cmd.OutOrStdout(), "revoked", r)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&file, "file", "", "revocations signed by netnode ca revoke")
	return cmd
}
