// Command netnode runs and inspects netmesh nodes.
//
//	netnode keygen -k node.key   write a new identity key file
//	netnode id -k node.key       print the key file's NodeID
//	netnode demo                 run a small local mesh and show it working
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitUsage is the exit code for bad flags, arguments or configuration.
const exitUsage = 2

// usageError marks an error as the caller's fault (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "netnode:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(exitUsage)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "netnode",
		Short:         "Run and inspect netmesh nodes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newKeygen(), newID(), newDemo())
	return root
}
