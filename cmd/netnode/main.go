// Command netnode runs and inspects netmesh nodes.
//
//	netnode keygen -k node.key          write a new identity key file
//	netnode id -k node.key              print the key file's NodeID
//	netnode run -c netnode.toml         join a mesh and run until stopped
//	netnode status | peers              inspect the running node
//	netnode health <node>               one peer's state, path and RTT
//	netnode ping <node> -c 4            round trips over a peer's session
//	netnode find 'gpu && gpu_mem_gb>=24' nodes by announced capabilities
//	netnode nodes                       the whole capability index
//	netnode pub <channel> <msg>         publish on one of the node's channels
//	netnode sub <node> <channel>        subscribe and print the messages
//	netnode call any netnode.info       call an RPC service (on any node that has it)
//	netnode task send --skill resize    send a task to a node that offers a skill
//	netnode task result|watch|list ID   follow tasks by id
//	netnode daemon spawn counter        start a stateful daemon placed by load
//	netnode daemon deliver|migrate ID   send it events, move it live
//	netnode token issue --to KEY ...    sign a channel permission token
//	netnode ca init|sign|revoke         an offline membership authority
//	netnode pair code / pair --code     join a closed mesh with a one-time code
//	netnode cert show                   a membership certificate
//	netnode revoke KEY                  revoke a member across the mesh
//	netnode nat                         NAT type, reflex, punch counters
//	netnode demo                        run a small local mesh and show it working
//
// The inspection commands talk to the running node over its control
// socket (--control). docs/OPERATIONS.md is the operator's guide.
//
// Exit codes: 0 success, 1 failure, 2 bad flags, arguments or
// configuration, 130 interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitFailure     = 1
	exitUsage       = 2   // bad flags, arguments or configuration
	exitInterrupted = 130 // SIGINT or SIGTERM ended a command other than run
)

// usageError marks an error as the caller's fault (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // a second signal kills at once
	err := newRoot().ExecuteContext(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if err == nil {
		return
	}
	if interrupted && errors.Is(err, context.Canceled) {
		os.Exit(exitInterrupted)
	}
	// One line, whatever the error wraps.
	fmt.Fprintln(os.Stderr, "netnode:", strings.Join(strings.Fields(err.Error()), " "))
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(exitUsage)
	}
	os.Exit(exitFailure)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "netnode",
		Short:         "Run and inspect netmesh nodes",
		Args:          usageArgs(cobra.NoArgs),
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(),
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newKeygen(), newID(), newRun(), newStatus(), newPeers(), newHealth(), newPing(),
		newFind(), newNodes(), newPub(), newSub(), newCall(), newTask(), newDaemon(), newToken(), newNAT(), newDemo())
	root.AddCommand(newCA(), newCert(), newPair(), newRevoke())
	wrapArgs(root)
	return root
}

// wrapArgs makes the argument checks of every command below c return
// usage errors.
func wrapArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		if sub.Args != nil {
			sub.Args = usageArgs(sub.Args)
		}
		wrapArgs(sub)
	}
}

// oneNode checks that a command got exactly one argument: a node name.
func oneNode(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("%s takes one node: a NodeID, a unique prefix of one, or a node name (got %d arguments)", cmd.Name(), len(args))}
	}
	return nil
}

// usageArgs makes the errors of an argument check usage errors that end
// with the command's usage line, so the one line on standard error says
// what to type. newRoot applies it to every subcommand.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%w (usage: %s)", err, cmd.UseLine())}
		}
		return nil
	}
}
