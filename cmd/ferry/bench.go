package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/internal/cputime"
	"github.com/ferrydata/ferry/pipes/all"
	"github.com/ferrydata/ferry/pipes/rest/collectbench"
)

// benchScenarios run in this order; each later one uses the store the
// earlier ones left (unchanged, changed10, jq, dtl, dtl-jq and deleted10
// need initial's, datasets-unchanged datasets'). deleted10 comes after
// the transforms, which read the whole dataset: it deletes a tenth.
var benchScenarios = []string{"floor", "floor-unchanged", "floor-changed10", "floor-jq", "floor-deleted10", "initial", "unchanged", "changed10", "jq", "dtl", "dtl-jq", "deleted10", "collect", "recollect", "share", "datasets", "datasets-unchanged", "large"}

// benchNoFloorRatio lists scenarios whose throughput is not dataset writes
// of the generated entities, so a ratio to the floor means nothing.
// The floors of other work than a load (bench_floors.go) have none either.
var benchNoFloorRatio = map[string]bool{"large": true, "share": true, "collect": true, "recollect": true, "floor-unchanged": true, "floor-changed10": true, "floor-jq": true, "floor-deleted10": true}

// benchResult is one scenario's figures.
type benchResult struct {
	Entities     int     `json:"entities"`
	Seconds      float64 `json:"seconds"`
	EntitiesPerS float64 `json:"entities_per_s"`
	RatioToFloor float64 `json:"ratio_to_floor"`
	// OwnFloor names the bare floor of a scenario that is not a load
	// (benchOwnFloor, bench_floors.go); RatioToOwnFloor is the scenario's
	// throughput over that floor's, measured in the same run.
	OwnFloor        string  `json:"own_floor,omitempty"`
	RatioToOwnFloor float64 `json:"ratio_to_own_floor,omitempty"`
	PeakRSSBytes    int64   `json:"peak_rss_bytes"`
	PeakAnonBytes   int64   `json:"peak_anon_bytes"`
	Written         int64   `json:"written"`
	Unchanged       int64   `json:"unchanged"`
	Deleted         int64   `json:"deleted"`
	TxEntities      int     `json:"entities_per_transaction"`
	FsyncOnCommit   bool    `json:"fsync"`
	// How the store kept its resident memory bound (see boltstore.Store.ReleaseStats).
	ReleasesKeeping int64   `json:"releases_keeping_index"`
	ReleasesFull    int64   `json:"releases_full"`
	ReleaseSeconds  float64 `json:"release_seconds"`
	// Scrape: the load scenario's /metrics scrapes (bench_scrape.go).
	Scrape *scrapeResult `json:"scrape,omitempty"`
	// IDs is the style of the generated _ids the scenario read (--ids;
	// empty for scenarios that make their own entities).
	IDs string `json:"ids,omitempty"`
	// Share scenario: HTTP requests sent.
	Requests int64 `json:"requests,omitempty"`
	// CPUSeconds is the scenario's CPU time (user + system, the process's
	// own; with the fake API's for collect and share): unlike wall time it
	// holds when other work shares the machine.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// Collect scenario: the fake API's own cost, measured by a plain
	// client fetching the same pages.
	APIEntitiesPerS float64 `json:"api_entities_per_s,omitempty"`
	APICPUSeconds   float64 `json:"api_cpu_seconds,omitempty"`
	// APISeparate: the fake API ran in its own process, so CPUSeconds is
	// Ferry's alone.
	APISeparate bool `json:"api_separate_process,omitempty"`
	// Usage is what the scenario's process and the machine did meanwhile
	// (bench_usage.go).
	Usage *benchUsage `json:"usage,omitempty"`
	// Machine is how fast the machine was right before the scenario
	// (bench_probe.go).
	Machine *machineProbe `json:"machine_probe,omitempty"`
}

// cpuMicrosPerEntity is the scenario's CPU time per entity in µs.
func (r *benchResult) cpuMicrosPerEntity() float64 {
	if r.Entities == 0 {
		return 0
	}
	return r.CPUSeconds / float64(r.Entities) * 1e6
}

// benchCmd measures the store and runner on generated entities. Each
// scenario runs in its own child process so its peak RSS (getrusage
// maxrss of the child) is its own.
func (c *cli) benchCmd() *cobra.Command {
	var (
		n, ckpt, scrapeRounds           int
		dir, scenario, cpuprof, workers string
		noSync                          bool
		scrape                          time.Duration
		bo                              benchOptions
	)
	cmd := &cobra.Command{
		Use:     "bench",
		GroupID: groupTools,
		Short:   "Measure the throughput of the store and the runner",
		Long: `Bench generates N entities (~310 bytes of nested JSON, ids in random order) as
NDJSON and measures, each scenario in its own process, with fsync on: an
initial load, the same file again (unchanged), 10% changed, a jq pipe, a DTL
pipe with 10 functions and the equivalent jq, a full run without a tenth of
the entities, which deletion tracking deletes (deleted10), a REST collect
from a fake API
and the same collect again with nothing changed (recollect),
a share (write-back) run, the same entities spread over 1,000 pipes and
datasets (datasets, datasets-unchanged), a load of N/50 documents of ~10 KB
(large), and the floor (bare bbolt). It then checks the store
and fails if anything is off. Besides wall-clock throughput it reports each
scenario's CPU time per entity, which holds when the machine is shared, what
the machine did meanwhile (--json: usage; the scenarios other processes took
a tenth of the cores from are named under the table) and how fast its memory
and cores were right before (machine_probe).

--compare BASELINE.json (a saved 'ferry bench --json') prints each scenario's
ratio to the baseline and exits 1 when one fell by more than --tolerance
percent: a regression guard. Beside each ratio, MACHINE is the memory's speed
against the baseline's run (> 1: a faster machine now), shown, not applied. docs/performance.md has the current figures.`,
		Example: `  ferry bench
  ferry bench -n 100000 --json > baseline.json
  ferry bench -n 100000 --compare baseline.json --tolerance 10
  ferry bench --scenarios initial,unchanged --metric cpu --compare baseline.json`,
		Args: usageArgs(0, 0, "takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			code := exitOK
			if workers != "" && bo.ids != "hash" {
				c.errorf("bench: --workers generates hash ids: --ids %s is not supported with it", bo.ids)
				return reported(exitUsage)
			}
			if workers != "" || scenario == "worker" {
				code = c.benchWorkers(cmd.Context(), n, dir, workers, scenario, ckpt) // bench_nats.go
			} else {
				code = c.bench(cmd.Context(), n, ckpt, dir, scenario, cpuprof, noSync, scrape, scrapeRounds, bo)
			}
			if code != exitOK {
				return reported(code)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&n, "entities", "n", 1_000_000, "number of entities")
	f.StringVar(&dir, "dir", "", "work directory (default: a temporary directory, removed afterwards)")
	f.StringVar(&scenario, "scenario", "", "run one scenario in this process (used by the parent; needs --dir)")
	f.BoolVar(&noSync, "no-sync", false, "skip fsync (not what the targets are measured with)")
	f.StringVar(&cpuprof, "cpuprofile", "", "with --scenario: write a CPU profile to this file")
	f.StringVar(&bo.trace, "trace", "", "with --scenario: write a Go execution trace to this file (go tool trace: where the cores wait)")
	f.StringVar(&bo.memprof, "memprofile", "", "with --scenario: write the heap profile taken at the peak of the heap in use to this file")
	f.IntVar(&ckpt, "checkpoint-interval", engine.DefaultCheckpointInterval, "batches (of 100) per transaction, for the pipes and the floor")
	f.StringVar(&bo.scenarios, "scenarios", "", "comma-separated scenarios to run (default: all; "+strings.Join(benchScenarios, ",")+")")
	f.StringVar(&bo.compare, "compare", "", "a saved 'ferry bench --json' run: print each scenario's ratio to it and exit 1 on a regression")
	f.Float64Var(&bo.tolerance, "tolerance", 10, "with --compare: the largest drop (percent) that is not a regression")
	f.StringVar(&bo.metric, "metric", "throughput", "with --compare: throughput (entities/s, wall clock) or cpu (CPU time per entity, steadier on a shared machine)")
	f.StringVar(&workers, "workers", "", "with a nats:// --store: measure throughput with these numbers of worker processes on independent pipes instead (e.g. 1,2,4)")
	f.DurationVar(&scrape, "scrape", 0, "also measure what scraping /metrics at this interval (e.g. 100ms) costs an initial load: fresh loads with and without scraping, alternated")
	f.StringVar(&bo.ids, "ids", "hash", "the generated _ids: hash (random hex, \"9e3779b97f4a7c15-0001\") or prefixed (\"customer-0000123456\": \"customer-\" and the leading zeros shared); both arrive in random order")
	f.IntVar(&scrapeRounds, "scrape-rounds", 3, "with --scrape: pairs of loads to compare (the median ratio is reported)")
	f.MarkHidden("scenario")
	return jsonOK(cmd)
}

// benchOptions are the flags that choose and judge scenarios.
type benchOptions struct {
	scenarios string  // comma-separated; "" = all
	compare   string  // baseline file
	tolerance float64 // percent
	metric    string  // throughput | cpu
	memprof   string  // with --scenario: heap profile at the peak
	trace     string  // with --scenario: execution trace
	ids       string  // the generated entities' _id style (benchIDStyles)
}

// peakHeapProfile watches the heap in use (every 250 ms) and keeps in
// path the heap profile taken at its peak, which is what peak anonymous
// memory is made of; stop ends the watch and reports a failed write.
func peakHeapProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--memprofile: %w", err)
	}
	done, finished := make(chan struct{}), make(chan error, 1)
	go func() {
		var peak uint64
		var werr error
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				if peak == 0 && werr == nil {
					// A run shorter than one sample: its profile as it ends.
					werr = pprof.Lookup("heap").WriteTo(f, 0)
				}
				finished <- errors.Join(werr, f.Close())
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse <= peak+(1<<20) {
				continue
			}
			peak = ms.HeapInuse
			if err := f.Truncate(0); err != nil {
				werr = err
				continue
			}
			if _, err := f.Seek(0, 0); err != nil {
				werr = err
				continue
			}
			werr = pprof.Lookup("heap").WriteTo(f, 0)
		}
	}()
	return func() error { close(done); return <-finished }, nil
}

func (c *cli) bench(ctx context.Context, n, ckpt int, dir, scenario, cpuprof string, noSync bool, scrape time.Duration, scrapeRounds int, bo benchOptions) int {
	mapped := c.g.maxRSSMiB
	if n <= 0 {
		c.errorf("bench: --entities (-n) must be positive")
		return exitUsage
	}
	run, err := selectScenarios(bo.scenarios)
	if err != nil {
		c.errorf("bench: --scenarios: %v", err)
		return exitUsage
	}
	if bo.metric != "throughput" && bo.metric != "cpu" {
		c.errorf("bench: --metric %q: want throughput or cpu", bo.metric)
		return exitUsage
	}
	if !slices.Contains(benchIDStyles, bo.ids) {
		c.errorf("bench: --ids %q: want %s", bo.ids, strings.Join(benchIDStyles, " or "))
		return exitUsage
	}
	if bo.tolerance < 0 || bo.tolerance >= 100 {
		c.errorf("bench: --tolerance %g: want a percentage from 0 to 100", bo.tolerance)
		return exitUsage
	}
	var baseline map[string]*benchResult
	if bo.compare != "" && scenario == "" {
		if baseline, err = readBenchBaseline(bo.compare); err != nil {
			c.errorf("bench: --compare: %v", err)
			return exitUsage
		}
	}
	if scenario != "" {
		if cpuprof != "" {
			pf, err := os.Create(cpuprof)
			if err != nil {
				c.errorf("bench: %v", err)
				return exitFailed
			}
			pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
		if bo.trace != "" {
			tf, err := os.Create(bo.trace)
			if err != nil {
				c.errorf("bench: %v", err)
				return exitFailed
			}
			if err := trace.Start(tf); err != nil {
				c.errorf("bench: --trace: %v", err)
				return exitFailed
			}
			defer tf.Close()
			defer trace.Stop()
		}
		stopSampler := sampleAnon()
		if bo.memprof != "" {
			stop, err := peakHeapProfile(bo.memprof)
			if err != nil {
				c.errorf("bench: %v", err)
				return exitFailed
			}
			defer func() {
				if err := stop(); err != nil {
					c.errorf("bench: --memprofile: %v", err)
				}
			}()
		}
		var res *benchResult
		var err error
		usage := startUsage()
		if scenario == "load" {
			res, err = benchLoad(ctx, dir, n, noSync, ckpt, int64(mapped)<<20, scrape)
		} else {
			res, err = runScenario(ctx, scenario, dir, n, noSync, ckpt, int64(mapped)<<20, c.g.store)
		}
		if err != nil {
			c.errorf("bench %s: %v", scenario, err)
			return exitFailed
		}
		res.Usage = usage()
		res.PeakAnonBytes = stopSampler()
		// The process's own peak (VmHWM): the rusage the parent gets
		// also counts this process's children, such as the collect
		// scenario's fake API, whose seeded collection is not Ferry's.
		res.PeakRSSBytes = procStatusBytes("VmHWM:")
		json.NewEncoder(c.stdout).Encode(res)
		return exitOK
	}
	work, cleanup, err := benchWorkDir(dir)
	if err != nil {
		c.errorf("bench: %v", err)
		return exitFailed
	}
	defer cleanup()
	if err := os.MkdirAll(work, 0o755); err != nil {
		c.errorf("bench: %v", err)
		return exitFailed
	}
	os.RemoveAll(filepath.Join(work, "store"))
	storeURL, dropStore, err := c.benchStoreURL(ctx) // bench_nats.go
	if err != nil {
		c.errorf("bench: %v", err)
		return exitFailed
	}
	defer dropStore()
	if err := genBenchFiles(work, n, bo.ids, slices.Contains(run, "deleted10") || slices.Contains(run, "floor-deleted10")); err != nil {
		c.errorf("bench: generating entities: %v", err)
		return exitFailed
	}
	if slices.Contains(run, "datasets") || slices.Contains(run, "datasets-unchanged") {
		if err := genDatasetFiles(work, n); err != nil { // bench_datasets.go
			c.errorf("bench: generating the datasets scenarios' files: %v", err)
			return exitFailed
		}
	}
	if slices.Contains(run, "large") {
		if err := genLargeFile(work, n); err != nil { // bench_large.go
			c.errorf("bench: generating the large scenario's documents: %v", err)
			return exitFailed
		}
	}
	self, err := os.Executable()
	if err != nil {
		c.errorf("bench: %v", err)
		return exitFailed
	}
	results := map[string]*benchResult{}
	prober := newProber(probeWords) // bench_probe.go
	for _, sc := range run {
		if !c.g.json {
			fmt.Fprintf(c.stderr, "bench: %s...\n", sc)
		}
		cargs := []string{"bench", "--scenario", sc, "--dir", work, "-n", strconv.Itoa(n), "--checkpoint-interval", strconv.Itoa(ckpt), "--max-rss-mib", strconv.Itoa(mapped)}
		if noSync {
			cargs = append(cargs, "--no-sync")
		}
		if storeURL != "" {
			cargs = append(cargs, "--store", storeURL)
		}
		probe := prober.probe()
		cmd := exec.CommandContext(ctx, self, cargs...)
		cmd.Stderr = c.stderr
		out, err := cmd.Output()
		if err != nil {
			c.errorf("bench %s: %v", sc, err)
			return exitFailed
		}
		var res benchResult
		if err := json.Unmarshal(out, &res); err != nil {
			c.errorf("bench %s: bad child output: %v", sc, err)
			return exitFailed
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && res.PeakRSSBytes == 0 {
			res.PeakRSSBytes = ru.Maxrss * 1024 // Linux reports KiB
		}
		if benchReadsFiles(sc) {
			res.IDs = bo.ids
		}
		res.Machine = &probe
		results[sc] = &res
		if os.Getenv("FERRY_BENCH_CHECK_EACH") != "" && sc != "floor" && storeURL == "" {
			st, err := boltstore.Open(filepath.Join(work, "store"), boltstore.Options{ReadOnly: true})
			if err == nil {
				err = st.Check(ctx)
				st.Close()
			}
			fmt.Fprintf(c.stderr, "bench: after %s: check: %v\n", sc, err)
		}
	}
	// Verify what the scenarios left: a benchmark that corrupts is no result.
	if storeURL != "" {
		if err := checkNATSBench(ctx, storeURL); err != nil {
			c.errorf("bench: store check failed: %v", err)
			return exitFailed
		}
	} else if _, err := os.Stat(filepath.Join(work, "store", boltstore.FileName)); errors.Is(err, fs.ErrNotExist) {
		// No scenario that writes the shared store ran (--scenarios floor).
	} else if st, err := boltstore.Open(filepath.Join(work, "store"), boltstore.Options{ReadOnly: true}); err != nil {
		c.errorf("bench: verifying store: %v", err)
		return exitFailed
	} else {
		err := st.Check(ctx)
		st.Close()
		if err != nil {
			c.errorf("bench: store check failed: %v", err)
			return exitFailed
		}
	}
	var scrapeCost map[string]any
	if scrape > 0 {
		var err error
		if scrapeCost, err = c.benchScrapeCost(ctx, self, work, n, ckpt, mapped, noSync, scrape, max(1, scrapeRounds)); err != nil {
			c.errorf("bench: %v", err)
			return exitFailed
		}
	}
	if floor := results["floor"]; floor != nil && floor.EntitiesPerS > 0 {
		for sc, r := range results {
			if !benchNoFloorRatio[sc] {
				r.RatioToFloor = r.EntitiesPerS / floor.EntitiesPerS
			}
		}
	}
	for sc, f := range benchOwnFloor {
		if r, fr := results[sc], results[f]; r != nil && fr != nil && fr.EntitiesPerS > 0 {
			r.OwnFloor, r.RatioToOwnFloor = f, r.EntitiesPerS/fr.EntitiesPerS
		}
	}
	code := exitOK
	if baseline != nil {
		if !c.g.json {
			c.printBenchTable(run, results, n, bo.ids, noSync, storeURL, scrapeCost)
			fmt.Fprintln(c.stdout)
		}
		cmp := compareBench(run, baseline, results, bo.metric, bo.tolerance)
		if c.g.json {
			c.printJSON(map[string]any{"results": results, "compare": cmp})
		} else {
			printBenchCompare(c.stdout, cmp, bo)
		}
		for _, r := range cmp {
			if r.Regressed || r.Incomparable != "" {
				code = exitFailed
			}
		}
		return code
	}
	if c.g.json {
		if scrapeCost != nil {
			c.printJSON(map[string]any{"scenarios": results, "metrics_scrape": scrapeCost})
			return exitOK
		}
		c.printJSON(results)
		return exitOK
	}
	c.printBenchTable(run, results, n, bo.ids, noSync, storeURL, scrapeCost)
	return exitOK
}

// selectScenarios parses --scenarios: a comma-separated subset of
// benchScenarios, run in benchScenarios' order.
func selectScenarios(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return benchScenarios, nil
	}
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(benchScenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(benchScenarios, ", "))
		}
		want[s] = true
	}
	var out []string
	for _, s := range benchScenarios {
		if want[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

func (c *cli) printBenchTable(run []string, results map[string]*benchResult, n int, ids string, noSync bool, storeURL string, scrapeCost map[string]any) {
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SCENARIO\tENTITIES/S\tCPU µs/ENTITY\tRATIO TO FLOOR\tPEAK RSS\tPEAK ANON\tWRITTEN\tUNCHANGED\tDELETED\tSECONDS\n")
	for _, sc := range run {
		r := results[sc]
		ratio := "–"
		if r.RatioToFloor > 0 {
			ratio = fmt.Sprintf("%.2f", r.RatioToFloor)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\t%.0f MiB\t%.0f MiB\t%d\t%d\t%d\t%.2f\n", sc, r.EntitiesPerS, r.cpuMicrosPerEntity(), ratio,
			float64(r.PeakRSSBytes)/(1<<20), float64(r.PeakAnonBytes)/(1<<20), r.Written, r.Unchanged, r.Deleted, r.Seconds)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\n%d entities (%s ids), fsync %v. floor = decode + bare bbolt log bucket + _id->offset bucket in the same transactions.\n", n, ids, !noSync)
	printOwnFloors(c.stdout, run, results)     // bench_floors.go
	printBusyMachine(c.stdout, run, results)   // bench_usage.go
	printMachineProbes(c.stdout, run, results) // bench_probe.go
	if d, q := results["dtl"], results["dtl-jq"]; d != nil && q != nil && q.EntitiesPerS > 0 {
		fmt.Fprintf(c.stdout, "dtl (10 functions) runs at %.2f of the equivalent jq (dtl-jq).\n", d.EntitiesPerS/q.EntitiesPerS)
	}
	if r := results["collect"]; r != nil {
		where, ferry := "in the same process", max(r.CPUSeconds-r.APICPUSeconds, 0)
		if r.APISeparate {
			where, ferry = "in a process of its own", r.CPUSeconds
		}
		fmt.Fprintf(c.stdout, "collect: %d customers from a fake API %s, pages of %d; the fake API alone (a plain client fetching the same pages) serves %.0f/s at %.2f CPU µs each, and Ferry's side costs %.2f CPU µs per entity.\n",
			r.Entities, where, collectbench.PageSize, r.APIEntitiesPerS, r.APICPUSeconds/float64(r.Entities)*1e6, ferry/float64(r.Entities)*1e6)
	}
	if r := results["recollect"]; r != nil {
		fmt.Fprintf(c.stdout, "recollect: the same %d customers collected again, all unchanged (pages as text: a hash and a lookup per customer).\n", r.Entities)
	}
	if results["share"] != nil {
		fmt.Fprintf(c.stdout, "share: %d updates, each with its lookup, to a fake API in the same process.\n", benchShareEntities)
	}
	if results["datasets"] != nil || results["datasets-unchanged"] != nil {
		fmt.Fprintf(c.stdout, "datasets: the %d entities through %d pipes, each into a dataset of its own, run one after another: their first runs (datasets) and the same again (datasets-unchanged).\n", n, benchDatasetParts(n))
	}
	if storeURL != "" {
		fmt.Fprintf(c.stdout, "store: NATS JetStream at %s (the floor stays bbolt); fsync is the server's (sync_interval).\n", redactURL(storeURL))
	}
	if scrapeCost != nil {
		last := scrapeCost["last_round"].(scrapeResult)
		fmt.Fprintf(c.stdout, "/metrics scraped every %s during a fresh initial load (median of %d pairs): throughput ratio %.3f (cost %.1f%%), CPU time ratio %.3f (cost %.1f%%); %d scrapes, %.2f ms mean, %.2f ms max\n",
			scrapeCost["interval"], scrapeCost["rounds"], scrapeCost["median_ratio"], scrapeCost["cost_percent"], scrapeCost["median_cpu_ratio"], scrapeCost["cpu_cost_percent"],
			last.Scrapes, last.MeanMillis, last.MaxMillis)
	}
}

// benchIDStyles are the _id styles bench generates (--ids): "hash", hex
// that differs from the first byte on, as UUIDs and hashed keys do; and
// "prefixed", the ids of one family in a business system
// ("customer-0000123456"), whose first 11 bytes every id shares.
var benchIDStyles = []string{"hash", "prefixed"}

// benchReadsFiles reports whether scenario sc reads the generated
// entities (so its figures depend on --ids); collect and share make
// their own.
func benchReadsFiles(sc string) bool {
	switch sc {
	case "collect", "recollect", "share", "large":
		return false
	}
	return true
}

// benchID returns the _id of entity i of n in the given style. Both
// styles give n distinct ids in random order: hash's hashes i; prefixed's
// numbers are i times a prime, modulo n (a permutation of 0..n-1 while n
// is not a multiple of the prime).
func benchID(buf []byte, style string, i, n int) []byte {
	if style == "prefixed" {
		const prime = 2654435761
		k := uint64(i) * prime % uint64(max(n, 1))
		if n%prime == 0 {
			k = uint64(i)
		}
		return fmt.Appendf(buf, "customer-%010d", k)
	}
	h := uint64(i)*0x9E3779B97F4A7C15 ^ 0xD1B54A32D192ED03
	h ^= h >> 31
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 29
	return fmt.Appendf(buf, "%016x-%04x", h, i%0xffff)
}

// benchEntity writes the JSON of entity i (~300 bytes, nested) with the
// given _id. variant changes the content (for the "10% changed" scenario).
func benchEntity(buf, id []byte, i, variant int) []byte {
	return fmt.Appendf(buf, `{"_id":"%s","id":%d,"name":"Customer %d","email":"customer%d@example.com","active":%v,"balance":%d.%02d,"a":%d,`+
		`"address":{"street":"%d Main Street","city":"Springfield","zip":"%05d","country":"NO"},`+
		`"tags":["retail","tier-%d"],"updated":"2026-11-%02dT10:%02d:00Z","version":%d}`+"\n",
		id, i, i, i, i%3 != 0, i%100000, i%100, i, i%9999, i%99999, i%5, 1+i%28, i%60, variant)
}

// genBenchFiles writes the entities (entities.ndjson), the same with a
// tenth changed (entities-changed10.ndjson) and, with deleted, the
// changed ones without another tenth (entities-deleted10.ndjson,
// benchDeleted).
func genBenchFiles(dir string, n int, ids string, deleted bool) error {
	write := func(name string, changed, skip func(i int) bool) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		w := bufio.NewWriterSize(f, 1<<20)
		buf, id := make([]byte, 0, 512), make([]byte, 0, 32)
		for i := 0; i < n; i++ {
			if skip != nil && skip(i) {
				continue
			}
			v := 0
			if changed(i) {
				v = 1
			}
			id = benchID(id[:0], ids, i, n)
			buf = benchEntity(buf[:0], id, i, v)
			w.Write(buf)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return f.Close()
	}
	if err := write("entities.ndjson", func(int) bool { return false }, nil); err != nil {
		return err
	}
	if err := write("entities-changed10.ndjson", benchChanged, nil); err != nil {
		return err
	}
	if !deleted {
		return nil
	}
	return write("entities-deleted10.ndjson", benchChanged, benchDeleted)
}

// benchChanged reports whether entity i is changed in the file the
// changed10 scenario reads.
func benchChanged(i int) bool { return i%10 == 0 }

// benchDeleted reports whether entity i is left out of the file the
// deleted10 scenario reads: a tenth, none of those changed10 changes.
// The lines left are changed10's, so that after changed10 (the default
// order) the run has nothing to do but delete.
func benchDeleted(i int) bool { return i%10 == 5 }

func benchConfig(dir string, ckpt int) string {
	return fmt.Sprintf(`[
 {"_id": "bench-load", "type": "pipe", "checkpoint_interval": %[3]d, "source": {"type": "json", "format": "ndjson", "url": %[1]q}, "sink": {"type": "dataset", "dataset": "bench"}},
 {"_id": "bench-jq", "type": "pipe", "checkpoint_interval": %[3]d, "source": {"type": "dataset", "dataset": "bench"}, "transform": {"type": "jq", "expression": %[6]q}},
 {"_id": "bench-dtl", "type": "pipe", "checkpoint_interval": %[3]d, "source": {"type": "dataset", "dataset": "bench"}, "transform": {"type": "dtl", "rules": %[4]s}},
 {"_id": "bench-dtl-jq", "type": "pipe", "checkpoint_interval": %[3]d, "source": {"type": "dataset", "dataset": "bench"}, "transform": {"type": "jq", "expression": %[5]q}}
]`, filepath.Join(dir, "entities.ndjson"), filepath.Join(dir, "entities-changed10.ndjson"), ckpt, benchDTLRules, benchDTLJQ, benchJQ)
}

// benchJQ is the "jq" scenario's program (and floor-jq's).
const benchJQ = ". + {x: .a}"

// benchDTLRules is the "dtl" scenario's transform: 10 DTL functions (copy,
// add, remove, upper, lower, split, concat, count, if, eq) over the bench
// entity. benchDTLJQ does the same in jq ("dtl-jq"); TestBenchDTLMatchesJQ
// holds their output equal.
const benchDTLRules = `{"default": [
  ["copy", "*"],
  ["add", "name_upper", ["upper", "_S.name"]],
  ["add", "email_parts", ["split", "@", "_S.email"]],
  ["add", "city", ["lower", "_S.address.city"]],
  ["add", "label", ["concat", "_S.name", " (", "_S.address.country", ")"]],
  ["add", "tag_count", ["count", "_S.tags"]],
  ["add", "status", ["if", ["eq", "_S.active", true], "active", "inactive"]],
  ["remove", "a"]]}`

const benchDTLJQ = `. + {name_upper: (.name | ascii_upcase), email_parts: (.email | split("@")), city: (.address.city | ascii_downcase), ` +
	`label: (.name + " (" + .address.country + ")"), tag_count: (.tags | length), status: (if .active == true then "active" else "inactive" end)} | del(.a)`

func runScenario(ctx context.Context, sc, dir string, n int, noSync bool, ckpt int, mapped int64, storeURL string) (*benchResult, error) {
	if dir == "" {
		return nil, fmt.Errorf("--scenario needs --dir")
	}
	switch sc {
	case "floor":
		return benchFloor(dir, n, noSync, ckpt)
	case "floor-unchanged":
		return benchFloorLookup(dir, n, noSync, ckpt, "entities.ndjson") // bench_floors.go
	case "floor-changed10":
		return benchFloorLookup(dir, n, noSync, ckpt, "entities-changed10.ndjson")
	case "floor-jq":
		return benchFloorJQ(dir, n, ckpt)
	case "floor-deleted10":
		return benchFloorDeleted(dir, n, noSync, ckpt) // bench_floors.go
	case "share":
		return benchShare(ctx, dir, noSync)
	case "collect", "recollect":
		return benchCollect(ctx, dir, min(n, benchCollectMax), noSync, sc == "recollect", mapped)
	case "datasets", "datasets-unchanged":
		return benchDatasets(ctx, dir, n, noSync, ckpt, mapped, storeURL, sc == "datasets-unchanged") // bench_datasets.go
	case "large":
		return benchLarge(ctx, dir, n, noSync, ckpt, mapped, storeURL) // bench_large.go
	}
	eng, store, releases, err := benchEngine(ctx, dir, "bench.json", benchConfig(dir, ckpt), storeURL, noSync, mapped)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	pipe := map[string]string{"initial": "bench-load", "unchanged": "bench-load", "changed10": "bench-load", "deleted10": "bench-load", "jq": "bench-jq", "dtl": "bench-dtl", "dtl-jq": "bench-dtl-jq"}[sc]
	if pipe == "" {
		return nil, fmt.Errorf("unknown scenario %q", sc)
	}
	if sc == "changed10" || sc == "deleted10" {
		// The same pipe reading the changed file (or the one without a
		// tenth: a full run, so deletion tracking deletes that tenth):
		// swap the source by compiling a pipe that writes dataset
		// "bench" from it.
		cfg2 := fmt.Sprintf(`[{"_id": "bench-load", "type": "pipe", "checkpoint_interval": %d, "source": {"type": "json", "format": "ndjson", "url": %q}, "sink": {"type": "dataset", "dataset": "bench"}}]`, ckpt, filepath.Join(dir, "entities-"+sc+".ndjson"))
		plan, err := compileBenchConfig(filepath.Join(dir, "bench.json"), cfg2)
		if err != nil {
			return nil, err
		}
		eng = engine.New(store, plan, nil)
	}
	if sc == "jq" || sc == "dtl" || sc == "dtl-jq" {
		// Always measure a first run: drop what an earlier run wrote.
		if err := benchFirstRun(ctx, eng, store, pipe); err != nil {
			return nil, err
		}
	}
	return benchTimedRun(ctx, eng, store, releases, pipe, n, ckpt, noSync)
}

// benchTimedRun times a run of pipe over entities and returns its
// figures. The clock stops once the store is closed: closing waits for
// the index merge under way beside the writer and installs it, work the
// run caused.
func benchTimedRun(ctx context.Context, eng *engine.Engine, store engine.Store, releases func() (int64, int64, time.Duration), pipe string, entities, ckpt int, noSync bool) (*benchResult, error) {
	start, cpu0 := time.Now(), cputime.Now()
	rec, err := eng.Run(ctx, pipe, engine.RunOptions{})
	if err != nil {
		return nil, err
	}
	if err := store.Close(); err != nil {
		return nil, err
	}
	el, cpu := time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds()
	kept, full, spent := releases()
	return &benchResult{Entities: entities, Seconds: el, EntitiesPerS: float64(entities) / el, CPUSeconds: cpu, Written: rec.Written, Unchanged: rec.Unchanged,
		Deleted: rec.Deleted, TxEntities: engine.DefaultBatchSize * ckpt, FsyncOnCommit: !noSync,
		ReleasesKeeping: kept, ReleasesFull: full, ReleaseSeconds: spent.Seconds()}, nil
}

// asPlainGo has the floors run as a plain Go program would: without
// Ferry's soft memory limit and with the collector's default GOGC (or the
// one in the environment). Both are Ferry's choices (main.go), and the
// floors must not be changed by them. It returns what restores Ferry's.
func asPlainGo() (restore func()) {
	limit := debug.SetMemoryLimit(math.MaxInt64)
	gc := debug.SetGCPercent(100)
	if os.Getenv("GOGC") != "" {
		debug.SetGCPercent(gc)
	}
	return func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(gc)
	}
}

// benchFloor is the lower bound for a dataset write: decode each entity to
// find its _id, then write the raw bytes to a log bucket and _id -> offset
// to an index bucket, in transactions of the same size the engine uses.
// No hashing, no metadata, no transform, no canonical form. It runs as a
// plain Go program would (asPlainGo).
func benchFloor(dir string, n int, noSync bool, ckpt int) (*benchResult, error) {
	defer asPlainGo()()
	path := filepath.Join(dir, "floor.db")
	os.Remove(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: noSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: 1 << 30})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	defer os.Remove(path)
	f, err := os.Open(filepath.Join(dir, "entities.ndjson"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	txSize := engine.DefaultBatchSize * ckpt
	start, cpu0 := time.Now(), cputime.Now()
	var off uint64
	done := false
	for !done {
		type kv struct{ id, val []byte }
		batch := make([]kv, 0, txSize)
		for len(batch) < txSize {
			line, err := r.ReadBytes('\n')
			if len(line) == 0 && err != nil {
				done = true
				break
			}
			e, derr := engine.DecodeEntity(line)
			if derr != nil {
				return nil, derr
			}
			batch = append(batch, kv{[]byte(engine.ID(e)), line})
		}
		if len(batch) == 0 {
			break
		}
		err := db.Update(func(tx *bolt.Tx) error {
			lb, ib, err := floorBuckets(tx)
			if err != nil {
				return err
			}
			for _, e := range batch {
				k := binary.BigEndian.AppendUint64(nil, off)
				if err := lb.Put(k, e.val); err != nil {
					return err
				}
				if err := ib.Put(e.id, k); err != nil {
					return err
				}
				off++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	el, cpu := time.Since(start).Seconds(), (cputime.Now() - cpu0).Seconds()
	return &benchResult{Entities: n, Seconds: el, EntitiesPerS: float64(n) / el, CPUSeconds: cpu, Written: int64(off), TxEntities: txSize, FsyncOnCommit: !noSync}, nil
}

// sampleAnon samples the process's anonymous resident memory (heap,
// stacks; not the page cache of the mapped store file) every 50 ms and
// returns a function that stops sampling and reports the peak. Linux only;
// elsewhere it reports 0.
func sampleAnon() func() int64 {
	var peak atomic.Int64
	done := make(chan struct{})
	read := func() {
		if b := procStatusBytes("RssAnon:"); b > peak.Load() {
			peak.Store(b)
		}
	}
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				read()
			}
		}
	}()
	return func() int64 {
		close(done)
		read()
		return peak.Load()
	}
}

// procStatusBytes reads a kB field of /proc/self/status ("VmHWM:",
// "RssAnon:") in bytes; 0 where there is no such file or field.
func procStatusBytes(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// benchWorkDir returns dir, or a new temporary directory that cleanup
// removes when dir is empty.
func benchWorkDir(dir string) (work string, cleanup func(), err error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// benchPlan writes the bench config into dir as file and compiles it.
func benchPlan(dir, file string, ckpt int) (*engine.Plan, error) {
	return compileBenchConfig(filepath.Join(dir, file), benchConfig(dir, ckpt))
}

// benchEngine compiles config (written to dir/file) and returns an engine
// on the bench store in dir/store (openBenchStore), with the store's
// release counts. The caller closes the store.
func benchEngine(ctx context.Context, dir, file, config, storeURL string, noSync bool, mapped int64) (*engine.Engine, engine.Store, func() (int64, int64, time.Duration), error) {
	plan, err := compileBenchConfig(filepath.Join(dir, file), config)
	if err != nil {
		return nil, nil, nil, err
	}
	store, releases, err := openBenchStore(ctx, filepath.Join(dir, "store"), storeURL, noSync, mapped) // bench_nats.go
	if err != nil {
		return nil, nil, nil, err
	}
	return engine.New(store, plan, nil), store, releases, nil
}

// benchFirstRun makes the next runs of pipes first runs into empty
// datasets (each pipe's dataset is named as the pipe): both dropped and
// the offsets cleared, before the clock. Dropping a dataset maps its
// pages; the peak RSS reported (VmHWM) is the run's, not that: "5" resets
// it (Linux; where the file is missing the peak includes the drop).
func benchFirstRun(ctx context.Context, eng *engine.Engine, store engine.Store, pipes ...string) error {
	for _, p := range pipes {
		if err := store.DeleteDataset(ctx, p); err != nil {
			return err
		}
		if err := eng.ResetPipe(ctx, p); err != nil {
			return err
		}
	}
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return nil
}

// compileBenchConfig writes a config of bench's own (no $ENV) to path and
// compiles it.
func compileBenchConfig(path, config string) (*engine.Plan, error) {
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, err
	}
	cfg, err := engine.LoadConfig([]string{path}, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	return engine.Compile(cfg, all.Registry(), nil)
}
