package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/netmesh/netmesh/identity"
)

func newKeygen() *cobra.Command {
	var path, format string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Write a new identity key file (mode 0600) and print its NodeID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, ok := keyFormats[format]
			if !ok {
				return usageError{fmt.Errorf("--format %q: want netmesh or pkcs8", format)}
			}
			id, err := identity.Generate()
			if err != nil {
				return err
			}
			if err := id.SaveAs(path, f); err != nil {
				return err
			}
			return printID(cmd, id, path, asJSON)
		},
	}
	cmd.Flags().StringVarP(&path, "key", "k", "node.key", "key file to create")
	cmd.Flags().StringVar(&format, "format", "netmesh", "key file format: netmesh, or pkcs8 (PEM \"PRIVATE KEY\", as openssl writes)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// keyFormats maps keygen's --format values to key file formats.
var keyFormats = map[string]identity.KeyFormat{
	"netmesh": identity.KeyNetmesh,
	"pkcs8":   identity.KeyPKCS8,
}

func newID() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Print the NodeID and public key of a key file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := identity.Load(path)
			if err != nil {
				return usageError{err}
			}
			return printID(cmd, id, path, asJSON)
		},
	}
	cmd.Flags().StringVarP(&path, "key", "k", "node.key", "key file to read")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printID(cmd *cobra.Command, id *identity.Identity, path string, asJSON bool) error {
	out := cmd.OutOrStdout()
	if asJSON {
		return json.NewEncoder(out).Encode(map[string]string{
			"node_id":    id.NodeID().String(),
			"public_key": fmt.Sprintf("%x", []byte(id.PublicKey())),
			"key_file":   path,
		})
	}
	fmt.Fprintf(out, "node id     %s\npublic key  %x\nkey file    %s\n", id.NodeID(), []byte(id.PublicKey()), path)
	return nil
}
