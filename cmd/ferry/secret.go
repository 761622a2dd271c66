package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferrydata/ferry/engine/secrets"
)

// maxSecretSize bounds a secret read from stdin.
const maxSecretSize = 1 << 20

func (c *cli) secretCmd() *cobra.Command {
	cmd := groupCmd(&cobra.Command{
		Use:     "secret",
		GroupID: groupConnectors,
		Short:   "Manage the encrypted secrets $SECRET(name) resolves from",
		Long: `Secrets are stored AES-256-GCM encrypted in the store (KV namespace "secrets"),
with the key from FERRY_SECRET_KEY or DATA/secret.key (created 0600). A
system's $SECRET(name) resolves to the system's own secret first, then the
global one. Values never appear in output.`,
		Example: `  ferry secret set api_key --system acme < key.txt
  ferry secret list
  ferry secret rm api_key --system acme`,
	})
	cmd.AddCommand(c.secretSetCmd(), c.secretListCmd(), c.secretRmCmd())
	return cmd
}

func (c *cli) secretSetCmd() *cobra.Command {
	var system string
	var stdin bool
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Store a secret, read from stdin or a prompt that does not echo",
		Long: `Set stores the secret NAME (global, or for --system ID). The value is read from
stdin up to EOF without one trailing newline, or, when stdin is a terminal,
from a prompt that does not echo it. A value on the command line is refused:
shells keep it in their history.`,
		Example: `  ferry secret set api_key --system acme < key.txt
  printf %s "$TOKEN" | ferry secret set api_token
  ferry secret set api_key --system acme     # prompts without echo`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return usagef("secret set: give the secret's NAME; the value is read from stdin or a prompt")
			case len(args) > 1:
				return usagef("secret set: a value on the command line is refused (shells keep it in their history): pipe it on stdin (ferry secret set %s < file) or type it at the prompt", args[0])
			case !secrets.ValidName(args[0]):
				return usagef("secret set: invalid name %q (letters, digits, '_', '.' and '-')", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			value, err := c.readSecret(args[0], stdin)
			if err != nil {
				return err
			}
			store, err := c.openStore(false, false)
			if err != nil {
				return err
			}
			defer store.Close()
			ref := secrets.Ref{System: system, Name: args[0]}
			if err := secrets.Open(store, c.g.data, c.getenv).Set(ctx, ref.System, ref.Name, value); err != nil {
				return failf("secret set: %v", err)
			}
			if c.g.json {
				c.printJSON(map[string]any{"set": ref})
				return nil
			}
			fmt.Fprintf(c.stdout, "set secret %s\n", ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&system, "system", "", "the secret belongs to this system id (default: global, for every system)")
	cmd.Flags().BoolVar(&stdin, "stdin", false, "read the value from stdin even when it is a terminal")
	return jsonOK(cmd)
}

// readSecret reads a secret's value: from a no-echo prompt on the terminal
// when stdin is one (unless forceStdin), else stdin up to EOF without one
// trailing "\n" or "\r\n". An empty value is refused.
func (c *cli) readSecret(name string, forceStdin bool) (string, error) {
	var data []byte
	if fd, ok := c.stdinTerminal(); ok && !forceStdin {
		fmt.Fprintf(c.stderr, "Value of secret %s (not echoed): ", name)
		v, err := term.ReadPassword(fd)
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", failf("secret set: reading the value: %v", err)
		}
		data = v
	} else {
		v, err := io.ReadAll(io.LimitReader(c.stdin, maxSecretSize+1))
		if err != nil {
			return "", failf("secret set: reading stdin: %v", err)
		}
		data = v
	}
	if len(data) > maxSecretSize {
		return "", usagef("secret set: value longer than %d bytes", maxSecretSize)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return "", usagef("secret set: empty value (nothing on stdin); pipe the value in or type it at the prompt")
	}
	return string(data), nil
}

func (c *cli) secretListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the secrets' names (never their values)",
		Example: `  ferry secret list
  ferry secret list --json`,
		Args: usageArgs(0, 0, "takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var refs []secrets.Ref
			if c.storeExists() {
				store, err := c.openStore(true, false)
				if err != nil {
					return err
				}
				defer store.Close()
				if refs, err = secrets.Open(store, c.g.data, c.getenv).List(cmd.Context()); err != nil {
					return failf("secret list: %v", err)
				}
			}
			if c.g.json {
				if refs == nil {
					refs = []secrets.Ref{}
				}
				c.printJSON(refs)
				return nil
			}
			if len(refs) == 0 {
				fmt.Fprintln(c.stdout, "no secrets")
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SYSTEM\tNAME")
			for _, r := range refs {
				s := r.System
				if s == "" {
					s = "(global)"
				}
				fmt.Fprintf(tw, "%s\t%s\n", s, r.Name)
			}
			tw.Flush()
			return nil
		},
	}
	return jsonOK(cmd)
}

func (c *cli) secretRmCmd() *cobra.Command {
	var system string
	cmd := &cobra.Command{
		Use:               "rm NAME",
		Short:             "Remove a secret",
		Example:           `  ferry secret rm api_key --system acme`,
		Args:              usageArgs(1, 1, "give the secret's NAME"),
		ValidArgsFunction: c.completeSecrets,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ref := secrets.Ref{System: system, Name: args[0]}
			if !c.storeExists() {
				return usagef("secret rm: no secret %s (no store in %s)", ref, c.g.data)
			}
			store, err := c.openStore(false, false)
			if err != nil {
				return err
			}
			defer store.Close()
			sec := secrets.Open(store, c.g.data, c.getenv)
			found, err := sec.Delete(ctx, ref.System, ref.Name)
			if err != nil {
				return failf("secret rm: %v", err)
			}
			if !found {
				return usagef("secret rm: no secret %s%s (see 'ferry secret list')", ref, c.closeSecret(ctx, sec, ref))
			}
			if c.g.json {
				c.printJSON(map[string]any{"removed": ref})
				return nil
			}
			fmt.Fprintf(c.stdout, "removed secret %s\n", ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&system, "system", "", "the secret belongs to this system id (default: global)")
	return jsonOK(cmd)
}

// closeSecret suggests a stored secret close to ref ("" when none is).
func (c *cli) closeSecret(ctx context.Context, sec *secrets.Store, ref secrets.Ref) string {
	refs, err := sec.List(ctx)
	if err != nil {
		return ""
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.String())
	}
	return didYouMean(ref.String(), names)
}

// secretNames lists stored secrets as "name" (global) or "name --system
// sys" hints, for completion.
func secretNames(refs []secrets.Ref) []string {
	var out []string
	for _, r := range refs {
		if r.System == "" {
			out = append(out, r.Name)
		} else {
			out = append(out, r.Name+"\tsystem "+r.System)
		}
	}
	return out
}
