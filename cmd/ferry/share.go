package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
)

// shareCmd groups the write-back commands.
func (c *cli) shareCmd() *cobra.Command {
	cmd := groupCmd(&cobra.Command{
		Use:     "share",
		GroupID: groupPipelines,
		Short:   "Preview a share (write-back) pipe",
		Long: `A share pipe writes the desired state of a system (its -transform dataset) back
to the system: inserts, updates with optimistic locking, deletes. See
docs/write-back.md.`,
		Example: `  ferry share plan config/ crm-customer-share`,
	})
	cmd.AddCommand(c.sharePlanCmd())
	return cmd
}

func (c *cli) sharePlanCmd() *cobra.Command {
	var (
		envFile       string
		reset, rescan bool
		summary       bool
	)
	cmd := &cobra.Command{
		Use:   "plan [CONFIG] PIPE",
		Short: "Show what the next run of a share pipe would send, and why, without sending it",
		Long: `Plan reads what the next run of the share pipe would read and decides, per
entity, what it would do (insert, update, delete, or why nothing) and prints
it with the totals. It sends only lookups (side-effect-free requests) and
writes nothing: no intent, no share record, no offset. Writes journaled by an
earlier run whose outcome was not recorded are listed as pending. When the
run would trip the delete circuit breaker, plan says so (exit 1).`,
		Example: `  ferry share plan config/ crm-customer-share
  ferry share plan crm-customer-share --summary   # a connected connector's pipe
  ferry share plan config/ crm-customer-share --reset --json`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: c.completeRunArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			paths, pipes, err := configArgs(args)
			if err != nil {
				return err
			}
			if len(pipes) != 1 {
				return usagef("share plan: give one share pipe (after the optional CONFIG)")
			}
			plan, _, err := c.loadPlan(ctx, envFile, paths, true)
			if err != nil {
				return err
			}
			if err := checkPipes(plan, pipes); err != nil {
				return err
			}
			if plan.Pipe(pipes[0]).Sharer == nil {
				return usagef("pipe %q is not a share pipe (its last transform must be transform-share-rest)", pipes[0])
			}
			store, err := c.openStore(true, false)
			if err != nil {
				return err
			}
			defer store.Close()
			eng := engine.New(store, plan, c.logger())
			type row struct {
				ID     string `json:"_id"`
				Op     string `json:"decision"`
				Reason string `json:"reason,omitempty"`
				Error  string `json:"error,omitempty"`
			}
			var rows []row
			res, err := eng.PlanShare(ctx, pipes[0], engine.RunOptions{Reset: reset, Rescan: rescan}, func(a *engine.ShareAction) {
				rows = append(rows, row{ID: a.ID, Op: string(a.Op), Reason: a.Reason, Error: a.Error})
			})
			if err != nil {
				return failf("%v", err)
			}
			if c.g.json {
				if rows == nil {
					rows = []row{}
				}
				c.printJSON(map[string]any{"pipe": pipes[0], "entities": rows, "counts": res.Counts, "breaker_error": res.BreakerError})
			} else {
				if !summary {
					tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ENTITY\tDECISION\tREASON")
					for _, r := range rows {
						why := r.Reason
						if r.Error != "" {
							why = r.Error
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, r.Op, trunc(why, 100))
					}
					tw.Flush()
					fmt.Fprintln(c.stdout)
				}
				fmt.Fprintf(c.stdout, "%s: %s, %s\n", pipes[0], entities(len(rows)), orNothing(shareSummary(res.Counts)))
				if res.BreakerError != "" {
					fmt.Fprintf(c.stdout, "the run would stop before sending anything: %s\n", res.BreakerError)
				}
			}
			if res.BreakerError != "" {
				return reported(exitFailed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&envFile, "env", "", "JSON file of $ENV(...) values (the process environment is used too)")
	f.BoolVar(&reset, "reset", false, "plan a full run from the beginning (as run --reset would)")
	f.BoolVar(&rescan, "rescan", false, "plan a full run (as run --rescan would)")
	f.BoolVar(&summary, "summary", false, "print the totals only")
	return jsonOK(cmd)
}

func (c *cli) retryCmd() *cobra.Command {
	var envFile string
	cmd := &cobra.Command{
		Use:     "retry [CONFIG] PIPE [ID...]",
		GroupID: groupPipelines,
		Short:   "Put a share pipe's dead-lettered entities back into its retry queue",
		Long: `Retry puts the entities of a share pipe's dead-letter dataset (all, or the
given _ids) back into the pipe's retry queue; the next run of the pipe writes
them again, with their latest desired state and attempts counted from zero.
An insert held as "in doubt" (it may have reached the system before a crash)
is sent again: check the system first.`,
		Example: `  ferry retry config/ crm-customer-share
  ferry retry config/ crm-customer-share erp-customer:17`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: c.completeRunArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			paths, rest, err := configArgs(args)
			if err != nil {
				return err
			}
			if len(rest) == 0 {
				return usagef("retry: give the share pipe (after the optional CONFIG)")
			}
			plan, _, err := c.loadPlan(ctx, envFile, paths, true)
			if err != nil {
				return err
			}
			if err := checkPipes(plan, rest[:1]); err != nil {
				return err
			}
			if plan.Pipe(rest[0]).Sharer == nil {
				return usagef("pipe %q is not a share pipe: only share pipes have dead letters to retry", rest[0])
			}
			store, err := c.openStore(false, false)
			if err != nil {
				return err
			}
			defer store.Close()
			n, err := engine.New(store, plan, c.logger()).Requeue(ctx, rest[0], rest[1:])
			if err != nil {
				return failf("%v", err)
			}
			if c.g.json {
				c.printJSON(map[string]any{"pipe": rest[0], "requeued": n})
				return nil
			}
			fmt.Fprintf(c.stdout, "%s: %s back in the retry queue; the next run writes them\n", rest[0], entities(n))
			return nil
		},
	}
	cmd.Flags().StringVar(&envFile, "env", "", "JSON file of $ENV(...) values (the process environment is used too)")
	return jsonOK(cmd)
}

// shareSummary renders a share run's non-zero counts: "inserted 2,
// updated 5, skipped_unchanged 90".
func shareSummary(sc engine.ShareCounts) string {
	var parts []string
	sc.Each(func(name string, n int64) {
		if n != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
	})
	return strings.Join(parts, ", ")
}

// entities renders "1 entity", "2 entities".
func entities(n int) string {
	if n == 1 {
		return "1 entity"
	}
	return fmt.Sprintf("%d entities", n)
}

func orNothing(s string) string {
	if s == "" {
		return "nothing to do"
	}
	return s
}
