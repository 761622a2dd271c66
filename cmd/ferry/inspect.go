package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
)

// datasetRow is one dataset of `ferry datasets`: the store's counts plus
// the live entities, so the table and --json show the same numbers.
type datasetRow struct {
	engine.DatasetInfo
	// Live counts the _ids whose latest version is not deleted
	// (entities - deleted).
	Live uint64 `json:"live"`
}

func (c *cli) datasetsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "datasets",
		GroupID: groupInspect,
		Short:   "List datasets with their counts",
		Long: `Datasets lists every dataset in the store. ENTITIES counts distinct _ids,
LIVE those whose latest version is not deleted, DELETED those whose latest
version is deleted (ENTITIES = LIVE + DELETED), VERSIONS every version in the
log. --json prints the same counts under the same names.`,
		Example: `  ferry datasets
  ferry datasets --json | jq '.[] | {name, live}'`,
		Args: usageArgs(0, 0, "takes no arguments (ferry dataset show NAME shows one)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := c.openStore(true, false)
			if err != nil {
				return err
			}
			defer store.Close()
			list, err := store.Datasets(cmd.Context())
			if err != nil {
				return failf("%v", err)
			}
			rows := make([]datasetRow, 0, len(list))
			for _, d := range list {
				rows = append(rows, datasetRow{DatasetInfo: d, Live: d.Entities - d.Deleted})
			}
			if c.g.json {
				c.printJSON(rows)
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DATASET\tENTITIES\tLIVE\tDELETED\tVERSIONS\tLAST OFFSET\tPOPULATED\tUPDATED")
			for _, d := range rows {
				last := "-"
				if d.Versions > 0 {
					last = strconv.FormatUint(d.LastOffset, 10)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%v\t%s\n", d.Name, d.Entities, d.Live, d.Deleted, d.Versions, last, d.Populated, localTime(d.Updated))
			}
			tw.Flush()
			return nil
		},
	}
	return jsonOK(cmd)
}

func (c *cli) datasetCmd() *cobra.Command {
	cmd := groupCmd(&cobra.Command{
		Use:     "dataset",
		GroupID: groupInspect,
		Short:   "Show a dataset's entities",
		Example: `  ferry dataset show crm-person-collect --id p2 --history`,
	})
	cmd.AddCommand(c.datasetShowCmd())
	return cmd
}

func (c *cli) datasetShowCmd() *cobra.Command {
	var (
		since           uint64
		id              string
		history, allVer bool
		limit           int
	)
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a dataset's entities (latest version per _id, in log order)",
		Long: `Show prints a dataset's entities in log order: the latest version of each _id
(every version with --all-versions), from offset --since, at most --limit.
With --id it prints that entity's latest version, or its whole history with
--history (oldest first). --json prints a JSON array of the entities with
their reserved keys (_updated, _ts, _previous, _hash, _deleted).`,
		Example: `  ferry dataset show crm-person-collect
  ferry dataset show crm-person-collect --id p2 --history --json
  ferry dataset show person-golden --since 100 --limit 0`,
		Args:              usageArgs(1, 1, "give one dataset name (see 'ferry datasets')"),
		ValidArgsFunction: c.completeDatasets,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			if history && id == "" {
				return usagef("dataset show: --history needs --id ID")
			}
			store, err := c.openStore(true, false)
			if err != nil {
				return err
			}
			defer store.Close()
			if err := checkDataset(ctx, store, name); err != nil {
				return err
			}
			var recs []engine.Record
			switch {
			case id != "" && history:
				recs, err = store.History(ctx, name, id)
			case id != "":
				var r engine.Record
				var found bool
				r, found, err = store.Get(ctx, name, id)
				if found {
					recs = []engine.Record{r}
				}
			default:
				_, err = store.Scan(ctx, name, engine.ScanOptions{From: since, Limit: limit, LatestOnly: !allVer}, func(r engine.Record) error {
					recs = append(recs, r)
					return nil
				})
			}
			if err != nil {
				return failf("%v", err)
			}
			if id != "" && len(recs) == 0 {
				return failf("dataset %q has no entity %s", name, engine.QuoteID(id))
			}
			if c.g.json {
				buf := []byte("[")
				for i := range recs {
					if i > 0 {
						buf = append(buf, ',', '\n')
					}
					buf = recs[i].AppendJSON(buf)
				}
				buf = append(buf, "]\n"...)
				c.stdout.Write(buf)
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "OFFSET\t_ID\tDELETED\tPREVIOUS\tENTITY")
			for _, r := range recs {
				prev := "-"
				if r.HasPrev {
					prev = strconv.FormatUint(r.Previous, 10)
				}
				fmt.Fprintf(tw, "%d\t%s\t%v\t%s\t%s\n", r.Offset, r.ID, r.Deleted, prev, trunc(string(r.Body), 100))
			}
			tw.Flush()
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&since, "since", 0, "first offset to show")
	f.StringVar(&id, "id", "", "show only this _id (its latest version, or all with --history)")
	f.BoolVar(&history, "history", false, "with --id: every version, oldest first")
	f.IntVar(&limit, "limit", 100, "at most this many entities (0: all)")
	f.BoolVar(&allVer, "all-versions", false, "show every version in log order, not only the latest per _id")
	return jsonOK(cmd)
}

// checkDataset fails with exit 2 when the store has no dataset name,
// suggesting a close one.
func checkDataset(ctx context.Context, store engine.Store, name string) error {
	if _, found, err := store.Dataset(ctx, name); err != nil {
		return failf("%v", err)
	} else if found {
		return nil
	}
	infos, err := store.Datasets(ctx)
	if err != nil {
		return failf("%v", err)
	}
	var names []string
	for _, d := range infos {
		names = append(names, d.Name)
	}
	return usagef("no dataset %q%s (see 'ferry datasets')", name, didYouMean(name, names))
}

// pipeRow is one pipe of `ferry pipes`.
type pipeRow struct {
	Pipe    string            `json:"pipe"`
	Source  string            `json:"source,omitempty"`
	Sink    string            `json:"sink,omitempty"`
	State   engine.PipeState  `json:"state"`
	LastRun *engine.RunRecord `json:"last_run,omitempty"`
}

func (c *cli) pipesCmd() *cobra.Command {
	var envFile string
	cmd := &cobra.Command{
		Use:     "pipes [CONFIG]",
		GroupID: groupInspect,
		Short:   "List pipes with their offset and last run",
		Long: `Pipes lists the pipes the store has run, with their continuation token
(OFFSET) and last run. With CONFIG it lists the config's pipes too, with their
source and sink, including those that never ran.`,
		Example: `  ferry pipes
  ferry pipes examples/demo/config --env examples/demo/env/day1.json --json`,
		Args: usageArgs(0, 1, "give at most one config file or directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ids := map[string]pipeRow{}
			if len(args) > 0 {
				plan, _, err := c.loadPlan(ctx, envFile, args, true)
				if err != nil {
					return err
				}
				for _, p := range plan.Pipes {
					src, _ := p.Comp.Raw["source"].(map[string]any)
					r := pipeRow{Pipe: p.ID, Sink: p.Output}
					r.Source, _ = src["type"].(string)
					if ds, ok := src["dataset"].(string); ok {
						r.Source += " " + ds
					}
					ids[p.ID] = r
				}
			}
			rows := []pipeRow{}
			if len(args) > 0 && !c.storeExists() {
				// A config whose pipes never ran.
				for _, id := range sortedKeys(ids) {
					rows = append(rows, ids[id])
				}
			} else {
				store, err := c.openStore(true, false)
				if err != nil {
					return err
				}
				defer store.Close()
				runs, err := store.Runs(ctx, "", 0)
				if err != nil {
					return failf("%v", err)
				}
				for _, r := range runs {
					if _, ok := ids[r.Pipe]; !ok {
						ids[r.Pipe] = pipeRow{Pipe: r.Pipe}
					}
				}
				for _, id := range sortedKeys(ids) {
					r := ids[id]
					st, err := store.PipeState(ctx, id)
					if err != nil {
						return failf("%v", err)
					}
					r.State = st
					if last, err := store.Runs(ctx, id, 1); err == nil && len(last) == 1 {
						r.LastRun = &last[0]
					}
					rows = append(rows, r)
				}
			}
			if c.g.json {
				c.printJSON(rows)
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PIPE\tSOURCE\tSINK\tOFFSET\tLAST RUN\tREAD\tWRITTEN\tSTATUS")
			for _, r := range rows {
				last, read, written, status := "never", "-", "-", "ok"
				if r.LastRun != nil {
					last = r.LastRun.End.Local().Format(time.DateTime)
					read, written = strconv.FormatInt(r.LastRun.Read, 10), strconv.FormatInt(r.LastRun.Written, 10)
					if r.LastRun.Error != "" {
						status = "failed: " + trunc(r.LastRun.Error, 50)
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Pipe, r.Source, r.Sink, orDash(r.State.Since), last, read, written, status)
			}
			tw.Flush()
			return nil
		},
	}
	cmd.Flags().StringVar(&envFile, "env", "", "JSON file of $ENV(...) values for CONFIG")
	return jsonOK(cmd)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) pipeCmd() *cobra.Command {
	cmd := groupCmd(&cobra.Command{
		Use:     "pipe",
		GroupID: groupInspect,
		Short:   "Show a pipe's run log",
		Example: `  ferry pipe log crm-person-collect`,
	})
	cmd.AddCommand(c.pipeLogCmd())
	return cmd
}

func (c *cli) pipeLogCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "log NAME",
		Short: "Show a pipe's run log, newest first",
		Long: `Log prints the newest runs of a pipe: start, duration, sync type, counts and
error. --json prints the run records.`,
		Example: `  ferry pipe log crm-person-collect
  ferry pipe log crm-person-collect --limit 1 --json`,
		Args:              usageArgs(1, 1, "give one pipe id (see 'ferry pipes')"),
		ValidArgsFunction: c.completePipes,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := c.openStore(true, false)
			if err != nil {
				return err
			}
			defer store.Close()
			runs, err := store.Runs(ctx, args[0], limit)
			if err != nil {
				return failf("%v", err)
			}
			if len(runs) == 0 {
				known, err := storePipes(ctx, store)
				if err != nil {
					return failf("%v", err)
				}
				return usagef("pipe %q has no runs in %s%s (see 'ferry pipes')", args[0], c.g.data, didYouMean(args[0], known))
			}
			if c.g.json {
				c.printJSON(runs)
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "START\tDURATION\tSYNC\tREAD\tWRITTEN\tUNCHANGED\tDELETED\tERROR\tSHARE")
			for _, r := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", r.Start.Local().Format(time.DateTime), r.End.Sub(r.Start).Round(time.Millisecond),
					r.SyncType, r.Read, would(r.Written, r.WouldWrite), r.Unchanged, would(r.Deleted, r.WouldDelete), trunc(r.Error, 80), shareSummary(r.Share))
			}
			tw.Flush()
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "at most this many runs (0: all)")
	return jsonOK(cmd)
}

// storePipes lists the ids of the pipes that have runs in the store.
func storePipes(ctx context.Context, store engine.Store) ([]string, error) {
	runs, err := store.Runs(ctx, "", 0)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, r := range runs {
		seen[r.Pipe] = true
	}
	return sortedKeys(seen), nil
}

// localTime formats t for tables, "-" when unknown (zero).
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
