package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/connectors"
	"github.com/ferrydata/ferry/engine/secrets"
)

// Shell completion ('ferry completion bash|zsh|fish' is cobra's) completes
// pipe, dataset, instance and secret names from the store in --data. The
// store is opened read-only with a short lock timeout; any failure (no
// store, locked by serve, corrupt) just completes nothing.

// withStore opens the store for completion and calls fn; errors yield no
// completions.
func (c *cli) withStore(ctx context.Context, fn func(engine.Store) []string) []string {
	if _, err := os.Stat(c.storePath()); err != nil {
		return nil
	}
	s, err := boltstore.Open(c.g.data, boltstore.Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond})
	if err != nil {
		return nil
	}
	defer s.Close()
	return fn(s)
}

// filterPrefix keeps the names starting with prefix.
func filterPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

func (c *cli) datasetNames(ctx context.Context) []string {
	return c.withStore(ctx, func(s engine.Store) []string {
		infos, err := s.Datasets(ctx)
		if err != nil {
			return nil
		}
		var out []string
		for _, d := range infos {
			out = append(out, d.Name)
		}
		return out
	})
}

func (c *cli) pipeNames(ctx context.Context) []string {
	return c.withStore(ctx, func(s engine.Store) []string {
		names, _ := storePipes(ctx, s)
		return names
	})
}

// completeDatasets completes one dataset name.
func (c *cli) completeDatasets(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return filterPrefix(c.datasetNames(cmd.Context()), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completePipes completes one pipe id.
func (c *cli) completePipes(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return filterPrefix(c.pipeNames(cmd.Context()), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeRunArgs completes `ferry run [CONFIG] [PIPE...]`: first a config
// path or a pipe id, then pipe ids (from the config when it is given and
// loads, else from the store), each once.
func (c *cli) completeRunArgs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	ctx := cmd.Context()
	if len(args) == 0 {
		// Files and directories, or the pipes of the store.
		return filterPrefix(c.pipeNames(ctx), toComplete), cobra.ShellCompDirectiveDefault
	}
	var names []string
	if _, err := os.Stat(args[0]); err == nil {
		if cfg, err := engine.LoadConfig(args[:1], func(string) (string, bool) { return "", true }); cfg != nil && (err == nil || cfg.Pipes != nil) {
			for _, p := range cfg.Pipes {
				names = append(names, p.ID)
			}
		}
	} else {
		names = c.pipeNames(ctx)
	}
	var out []string
	for _, n := range filterPrefix(names, toComplete) {
		if !slices.Contains(args, n) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeInstances completes a connector instance id.
func (c *cli) completeInstances(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx := cmd.Context()
	ids := c.withStore(ctx, func(s engine.Store) []string {
		list, err := connectors.List(ctx, s)
		if err != nil {
			return nil
		}
		var out []string
		for _, in := range list {
			out = append(out, in.ID)
		}
		return out
	})
	return filterPrefix(ids, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeSecrets completes a secret name (names only; values are never
// read).
func (c *cli) completeSecrets(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx := cmd.Context()
	names := c.withStore(ctx, func(s engine.Store) []string {
		refs, err := secrets.Open(s, c.g.data, c.getenv).List(ctx)
		if err != nil {
			return nil
		}
		return secretNames(refs)
	})
	return filterPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
}
