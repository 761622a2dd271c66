package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ferrydata/ferry/engine/secrets"
)

// maxSecretSize bounds a secret read from stdin.
const maxSecretSize = 1 << 20

// cmdSecret manages the encrypted secrets $SECRET(name) resolves from:
//
//	ferry secret set NAME [VALUE|--stdin] [--system ID]
//	ferry secret list [--json]
//	ferry secret rm NAME [--system ID]
//
// With --stdin the value is stdin up to EOF without one trailing newline
// ("\n" or "\r\n"); prefer it to VALUE, which shells keep in history.
func (c *cli) cmdSecret(ctx context.Context, args []string) int {
	if len(args) == 0 {
		c.errorf("secret: give set, list or rm")
		return exitUsage
	}
	sub := args[0]
	f := c.newFlags("secret " + sub)
	system := f.fs.String("system", "", "the secret belongs to this system id (default: global, for every system)")
	stdin := f.fs.Bool("stdin", false, "read the value from stdin (set)")
	pos, err := f.parse(args[1:])
	if err != nil {
		return exitUsage
	}
	switch sub {
	case "set":
		if len(pos) == 0 || len(pos) > 2 || (len(pos) == 2) == *stdin {
			c.errorf("secret set: give NAME and either VALUE or --stdin")
			return exitUsage
		}
	case "rm":
		if len(pos) != 1 {
			c.errorf("secret rm: give NAME")
			return exitUsage
		}
	case "list":
		if len(pos) != 0 {
			c.errorf("secret list takes no arguments")
			return exitUsage
		}
	default:
		c.errorf("secret: unknown subcommand %q (set, list, rm)", sub)
		return exitUsage
	}
	if len(pos) > 0 && !secrets.ValidName(pos[0]) {
		c.errorf("secret %s: invalid name %q (letters, digits, '_', '.' and '-')", sub, pos[0])
		return exitUsage
	}
	if sub != "set" && !storeExists(f) {
		if sub == "list" {
			if *f.json {
				c.printJSON([]secrets.Ref{})
			} else {
				fmt.Fprintln(c.stdout, "no secrets")
			}
			return exitOK
		}
		c.errorf("secret rm: no secret %q (no store in %s)", pos[0], *f.data)
		return exitUsage
	}
	store, ok := c.openStore(f, sub == "list")
	if !ok {
		return exitUsage
	}
	defer store.Close()
	sec := secrets.Open(store, *f.data, c.getenv)
	ref := secrets.Ref{System: *system}
	if len(pos) > 0 {
		ref.Name = pos[0]
	}
	switch sub {
	case "set":
		var value string
		if *stdin {
			data, err := io.ReadAll(io.LimitReader(c.stdin, maxSecretSize+1))
			if err != nil {
				c.errorf("secret set: reading stdin: %v", err)
				return exitFailed
			}
			if len(data) > maxSecretSize {
				c.errorf("secret set: value longer than %d bytes", maxSecretSize)
				return exitUsage
			}
			value = strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		} else {
			value = pos[1]
		}
		if err := sec.Set(ctx, ref.System, ref.Name, value); err != nil {
			c.errorf("secret set: %v", err)
			return exitFailed
		}
		fmt.Fprintf(c.stdout, "set secret %s\n", ref)
	case "rm":
		found, err := sec.Delete(ctx, ref.System, ref.Name)
		if err != nil {
			c.errorf("secret rm: %v", err)
			return exitFailed
		}
		if !found {
			c.errorf("secret rm: no secret %s", ref)
			return exitUsage
		}
		fmt.Fprintf(c.stdout, "removed secret %s\n", ref)
	case "list":
		refs, err := sec.List(ctx)
		if err != nil {
			c.errorf("secret list: %v", err)
			return exitFailed
		}
		if *f.json {
			if refs == nil {
				refs = []secrets.Ref{}
			}
			c.printJSON(refs)
			return exitOK
		}
		if len(refs) == 0 {
			fmt.Fprintln(c.stdout, "no secrets")
			return exitOK
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
	}
	return exitOK
}
