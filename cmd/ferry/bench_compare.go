package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/ferrydata/ferry/engine/boltstore"
	"io"
	"os"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/ferrydata/ferry/internal/cputime"
	"github.com/ferrydata/ferry/pipes/rest/collectbench"
)

// benchCollectMax caps the collect scenario's size: the fake API holds
// its collection in memory (-n smaller than this sizes it).
const benchCollectMax = 100_000

// benchCollect runs the "collect" scenario (package collectbench): n
// customers from a fake API on 127.0.0.1 into a dataset, fsync on, plus a
// plain client's pass over the same pages for the fake API's own cost.
//
// The fake API runs in a process of its own (this binary's fake-api
// command, without a memory limit): in Ferry's process its 100k seeded
// records would share the heap and the soft memory limit with the run and
// make the garbage collector, not Ferry, the cost measured. CPUSeconds is
// then Ferry's process alone.
//
// With recollect it measures instead a second, unchanged collect of the
// same customers ("recollect": collectbench.RecollectAgainst).
func benchCollect(ctx context.Context, dir string, n int, noSync, recollect bool, mapped int64) (*benchResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "fake-api", "--addr", "127.0.0.1:0", "--seed", fmt.Sprintf("customers=%d", n), "--json")
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=off", "FERRY_TEST_AS_CLI=1")
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer cmd.Wait()
	defer cancel()
	var info struct {
		URL string `json:"url"`
	}
	if err := json.NewDecoder(out).Decode(&info); err != nil || info.URL == "" {
		return nil, fmt.Errorf("starting the fake API: %v", err)
	}
	go io.Copy(io.Discard, out)
	pid := cmd.Process.Pid
	apiCPU := func() time.Duration {
		d, _ := cputime.OfProcess(pid)
		return d
	}
	opts := boltstore.Options{NoSync: noSync, MaxResident: mapped, Pressure: gcPressure()}
	if recollect {
		r, err := collectbench.RecollectAgainst(ctx, dir, info.URL, n, opts, apiCPU)
		if err != nil {
			return nil, err
		}
		return &benchResult{Entities: int(r.Entities), Seconds: r.Seconds, EntitiesPerS: r.EntitiesPerS(), Unchanged: r.Entities,
			FsyncOnCommit: !noSync, Requests: int64(r.Pages), CPUSeconds: r.CPUSeconds, APISeparate: r.SeparateAPI}, nil
	}
	r, err := collectbench.RunAgainst(ctx, dir, info.URL, n, opts, apiCPU)
	if err != nil {
		return nil, err
	}
	return &benchResult{Entities: int(r.Entities), Seconds: r.Seconds, EntitiesPerS: r.EntitiesPerS(), Written: r.Entities,
		TxEntities: 0, FsyncOnCommit: !noSync, Requests: int64(r.Pages), CPUSeconds: r.CPUSeconds,
		APIEntitiesPerS: float64(r.Entities) / r.APISeconds, APICPUSeconds: r.APICPUSeconds, APISeparate: r.SeparateAPI}, nil
}

// readBenchBaseline reads a saved `ferry bench --json` run, or the
// "results" of a saved `ferry bench --json --compare` run.
func readBenchBaseline(path string) (map[string]*benchResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var wrapped struct {
		Results   map[string]*benchResult `json:"results"`   // a --compare run
		Scenarios map[string]*benchResult `json:"scenarios"` // a --scrape run
	}
	if err := json.Unmarshal(b, &wrapped); err == nil && len(wrapped.Results) > 0 {
		return wrapped.Results, nil
	} else if err == nil && len(wrapped.Scenarios) > 0 {
		return wrapped.Scenarios, nil
	}
	var out map[string]*benchResult
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: not a 'ferry bench --json' result: %v", path, err)
	}
	for sc, r := range out {
		if r == nil || r.EntitiesPerS <= 0 {
			return nil, fmt.Errorf("%s: scenario %q has no entities_per_s: not a 'ferry bench --json' result", path, sc)
		}
	}
	return out, nil
}

// benchComparison is one scenario measured against its baseline.
type benchComparison struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Baseline float64 `json:"baseline"`
	Now      float64 `json:"now"`
	// Ratio is how fast the scenario is now relative to the baseline
	// (> 1: faster): the throughputs' ratio, or the inverse ratio of CPU
	// time per entity.
	Ratio     float64 `json:"ratio"`
	Regressed bool    `json:"regressed"`
	// Missing: the baseline has no figure for this scenario.
	Missing bool `json:"missing,omitempty"`
	// Incomparable says why the baseline's figure does not measure the
	// same work (another number of entities or another style of _ids):
	// such a row fails the comparison, as a regression does, instead of
	// passing on a meaningless ratio.
	Incomparable string `json:"incomparable,omitempty"`
	// OthersShare is the share of the machine's cores other processes
	// took while the scenario ran now (bench_usage.go): a regression measured
	// on a busy machine is reported as one, with this beside it.
	OthersShare float64 `json:"others_share,omitempty"`
	// Machine is how fast the machine's memory was now relative to the
	// baseline's run of the scenario (> 1: faster now; 0 when either has
	// no probe, bench_probe.go). Not applied to Ratio: shown beside it.
	Machine float64 `json:"machine_ratio,omitempty"`
}

// benchIncomparable says why base and cur (scenario sc) did not measure
// the same work, "" when they did. A baseline written before --ids
// existed has no ids: it used hash ids.
func benchIncomparable(sc string, base, cur *benchResult) string {
	if base.Entities != cur.Entities {
		return fmt.Sprintf("baseline has %d entities, this run %d", base.Entities, cur.Entities)
	}
	baseIDs := base.IDs
	if baseIDs == "" && benchReadsFiles(sc) {
		baseIDs = "hash"
	}
	if baseIDs != cur.IDs {
		return fmt.Sprintf("baseline has %s ids, this run %s", baseIDs, cur.IDs)
	}
	return ""
}

// compareBench compares the scenarios run with the baseline: a scenario
// regressed when its ratio is below 1 - tolerance/100.
func compareBench(run []string, baseline, now map[string]*benchResult, metric string, tolerance float64) []benchComparison {
	var out []benchComparison
	for _, sc := range run {
		cur := now[sc]
		if cur == nil {
			continue
		}
		c := benchComparison{Scenario: sc, Metric: metric, OthersShare: cur.Usage.othersShare()}
		base := baseline[sc]
		c.Machine = machineRatio(base, cur)
		if base != nil {
			if c.Incomparable = benchIncomparable(sc, base, cur); c.Incomparable != "" {
				out = append(out, c)
				continue
			}
		}
		switch metric {
		case "cpu":
			c.Now = cur.cpuMicrosPerEntity()
			if base != nil {
				c.Baseline = base.cpuMicrosPerEntity()
			}
			if c.Baseline > 0 && c.Now > 0 {
				c.Ratio = c.Baseline / c.Now
			}
		default:
			c.Now = cur.EntitiesPerS
			if base != nil {
				c.Baseline = base.EntitiesPerS
			}
			if c.Baseline > 0 {
				c.Ratio = c.Now / c.Baseline
			}
		}
		if c.Ratio == 0 {
			c.Missing = true
		} else {
			c.Regressed = c.Ratio < 1-tolerance/100
		}
		out = append(out, c)
	}
	return out
}

func printBenchCompare(w io.Writer, cmp []benchComparison, bo benchOptions) {
	unit := "ENTITIES/S"
	if bo.metric == "cpu" {
		unit = "CPU µs/ENTITY"
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SCENARIO\tBASELINE %s\tNOW\tRATIO\tMACHINE\tSTATUS\n", unit)
	failed, incomparable, probed := 0, 0, false
	for _, c := range cmp {
		status, machine := "ok", "–"
		if c.Machine > 0 {
			machine, probed = fmt.Sprintf("%.2f", c.Machine), true
		}
		switch {
		case c.Incomparable != "":
			fmt.Fprintf(tw, "%s\t–\t–\t–\t–\tNOT COMPARABLE (%s)\n", c.Scenario, c.Incomparable)
			incomparable++
			continue
		case c.Missing:
			status = "no baseline"
		case c.Regressed:
			status = fmt.Sprintf("REGRESSION (more than %g%% slower)", bo.tolerance)
			if c.OthersShare >= busyShare {
				status = fmt.Sprintf("REGRESSION (more than %g%% slower; other processes used %.0f%% of the cores meanwhile)", bo.tolerance, 100*c.OthersShare)
			}
			failed++
		}
		if c.Missing {
			fmt.Fprintf(tw, "%s\t–\t%.2f\t–\t–\t%s\n", c.Scenario, c.Now, status)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%s\t%s\n", c.Scenario, c.Baseline, c.Now, c.Ratio, machine, status)
	}
	tw.Flush()
	if probed {
		fmt.Fprintf(w, "\nMACHINE: the machine's random memory reads before the scenario, baseline's latency over now's (> 1: a faster machine now; not applied to RATIO).\n")
	}
	if incomparable > 0 {
		fmt.Fprintf(w, "\n%d scenario(s) not comparable with %s: run with the baseline's -n and --ids.\n", incomparable, bo.compare)
	}
	if failed > 0 {
		fmt.Fprintf(w, "\n%d scenario(s) regressed against %s (tolerance %g%%, metric %s).\n", failed, bo.compare, bo.tolerance, bo.metric)
	} else if incomparable == 0 {
		fmt.Fprintf(w, "\nNo scenario fell by more than %g%% against %s (metric %s).\n", bo.tolerance, bo.compare, bo.metric)
	}
}
