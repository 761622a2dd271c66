package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ferrydata/ferry/engine"
)

func (c *cli) cmdDatasets(ctx context.Context, args []string) int {
	f := c.newFlags("datasets")
	if _, err := f.parse(args); err != nil {
		return exitUsage
	}
	store, ok := c.openStore(f, true)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	list, err := store.Datasets(ctx)
	if err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	if *f.json {
		if list == nil {
			list = []engine.DatasetInfo{}
		}
		c.printJSON(list)
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATASET\tENTITIES\tDELETED\tVERSIONS\tLAST OFFSET\tPOPULATED\tUPDATED")
	for _, d := range list {
		last := "-"
		if d.Versions > 0 {
			last = strconv.FormatUint(d.LastOffset, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%v\t%s\n", d.Name, d.Entities-d.Deleted, d.Deleted, d.Versions, last, d.Populated, localTime(d.Updated))
	}
	tw.Flush()
	return exitOK
}

func (c *cli) cmdDataset(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] != "show" {
		c.errorf("usage: ferry dataset show NAME [--since N] [--id ID] [--history] [--limit N] [--json]")
		return exitUsage
	}
	f := c.newFlags("dataset show")
	since := f.fs.Uint64("since", 0, "first offset to show")
	id := f.fs.String("id", "", "show only this _id (its latest version, or all with --history)")
	history := f.fs.Bool("history", false, "with --id: every version, oldest first")
	limit := f.fs.Int("limit", 100, "at most this many entities (0: all)")
	all := f.fs.Bool("all-versions", false, "show every version in log order, not only the latest per _id")
	pos, err := f.parse(args[1:])
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		c.errorf("dataset show: give one dataset name")
		return exitUsage
	}
	name := pos[0]
	store, ok := c.openStore(f, true)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	if _, found, err := store.Dataset(ctx, name); err != nil || !found {
		if err == nil {
			err = fmt.Errorf("no dataset %q (see 'ferry datasets')", name)
		}
		c.errorf("%v", err)
		return exitUsage
	}
	var recs []engine.Record
	switch {
	case *id != "" && *history:
		recs, err = store.History(ctx, name, *id)
	case *id != "":
		var r engine.Record
		var found bool
		r, found, err = store.Get(ctx, name, *id)
		if found {
			recs = []engine.Record{r}
		}
	default:
		_, err = store.Scan(ctx, name, engine.ScanOptions{From: *since, Limit: *limit, LatestOnly: !*all}, func(r engine.Record) error {
			recs = append(recs, r)
			return nil
		})
	}
	if err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	if *id != "" && len(recs) == 0 {
		c.errorf("dataset %q has no entity %q", name, *id)
		return exitFailed
	}
	if *f.json {
		buf := []byte("[")
		for i := range recs {
			if i > 0 {
				buf = append(buf, ',', '\n')
			}
			buf = recs[i].AppendJSON(buf)
		}
		buf = append(buf, "]\n"...)
		c.stdout.Write(buf)
		return exitOK
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
	return exitOK
}

func (c *cli) cmdPipes(ctx context.Context, args []string) int {
	f := c.newFlags("pipes").withEnv()
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	store, ok := c.openStore(f, true)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	type row struct {
		Pipe    string            `json:"pipe"`
		Source  string            `json:"source,omitempty"`
		Sink    string            `json:"sink,omitempty"`
		State   engine.PipeState  `json:"state"`
		LastRun *engine.RunRecord `json:"last_run,omitempty"`
	}
	var rows []row
	ids := map[string]row{}
	if len(pos) > 0 {
		plan, ok := c.loadPlan(ctx, f, pos, true)
		if !ok {
			return exitUsage
		}
		for _, p := range plan.Pipes {
			src, _ := p.Comp.Raw["source"].(map[string]any)
			r := row{Pipe: p.ID, Sink: p.Output}
			r.Source, _ = src["type"].(string)
			if ds, ok := src["dataset"].(string); ok {
				r.Source += " " + ds
			}
			ids[p.ID] = r
		}
	}
	runs, err := store.Runs(ctx, "", 0)
	if err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	for _, r := range runs {
		if _, ok := ids[r.Pipe]; !ok {
			ids[r.Pipe] = row{Pipe: r.Pipe}
		}
	}
	for _, id := range sortedKeys(ids) {
		r := ids[id]
		st, err := store.PipeState(ctx, id)
		if err != nil {
			c.errorf("%v", err)
			return exitFailed
		}
		r.State = st
		if last, err := store.Runs(ctx, id, 1); err == nil && len(last) == 1 {
			r.LastRun = &last[0]
		}
		rows = append(rows, r)
	}
	if *f.json {
		if rows == nil {
			rows = []row{}
		}
		c.printJSON(rows)
		return exitOK
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
	return exitOK
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) cmdPipe(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] != "log" {
		c.errorf("usage: ferry pipe log NAME [--limit N] [--json]")
		return exitUsage
	}
	f := c.newFlags("pipe log")
	limit := f.fs.Int("limit", 20, "at most this many runs")
	pos, err := f.parse(args[1:])
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		c.errorf("pipe log: give one pipe id")
		return exitUsage
	}
	store, ok := c.openStore(f, true)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	runs, err := store.Runs(ctx, pos[0], *limit)
	if err != nil {
		c.errorf("%v", err)
		return exitFailed
	}
	if *f.json {
		if runs == nil {
			runs = []engine.RunRecord{}
		}
		c.printJSON(runs)
		return exitOK
	}
	if len(runs) == 0 {
		c.errorf("pipe %q has no runs", pos[0])
		return exitFailed
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tDURATION\tSYNC\tREAD\tWRITTEN\tUNCHANGED\tDELETED\tERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", r.Start.Local().Format(time.DateTime), r.End.Sub(r.Start).Round(time.Millisecond),
			r.SyncType, r.Read, r.Written, r.Unchanged, r.Deleted, trunc(r.Error, 80))
	}
	tw.Flush()
	return exitOK
}

// localTime formats t for tables, "-" when unknown (zero).
func localTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
