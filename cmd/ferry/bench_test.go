package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/all"
)

// TestBenchDTLMatchesJQ: the "dtl" and "dtl-jq" scenarios compare like
// with like only if the DTL rules and the jq program produce the same
// entities.
func TestBenchDTLMatchesJQ(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "bench.json")
	if err := os.WriteFile(cfgPath, []byte(benchConfig(dir, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadConfig([]string{cfgPath}, engine.EnvFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := engine.Compile(cfg, all.Registry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		out := map[string]string{}
		for _, pipe := range []string{"bench-dtl", "bench-dtl-jq"} {
			e, err := engine.DecodeEntity(benchEntity(nil, benchID(nil, "hash", i, 20), i, 0))
			if err != nil {
				t.Fatal(err)
			}
			res, err := plan.Pipe(pipe).Transforms[0].Transform(context.Background(), []engine.Entity{e})
			if err != nil || len(res) != 1 {
				t.Fatalf("%s: %d entities, %v", pipe, len(res), err)
			}
			p, err := engine.Prepare(res[0])
			if err != nil {
				t.Fatal(err)
			}
			out[pipe] = string(p.Body)
		}
		if out["bench-dtl"] != out["bench-dtl-jq"] {
			t.Fatalf("entity %d:\ndtl %s\njq  %s", i, out["bench-dtl"], out["bench-dtl-jq"])
		}
		if i == 0 && !strings.Contains(out["bench-dtl"], `"status":"inactive"`) {
			t.Errorf("entity 0 should be inactive: %s", out["bench-dtl"])
		}
	}
}

// TestBenchCompare runs `ferry bench` on a few hundred entities, then
// compares a run with a baseline far faster than this machine (a
// regression: exit 1) and with one far slower (exit 0).
func TestBenchCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ferry bench in subprocesses")
	}
	dir := t.TempDir()
	bench := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(os.Args[0], append([]string{"bench", "-n", "300", "--dir", filepath.Join(dir, "work"), "--scenarios", "initial,unchanged,dtl,dtl-jq"}, args...)...)
		cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String() + errb.String(), code
	}
	out, code := bench("--json")
	if code != 0 {
		t.Fatalf("bench --json: exit %d\n%s", code, out)
	}
	var res map[string]*benchResult
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &res); err != nil {
		t.Fatalf("bench --json output: %v\n%s", err, out)
	}
	for _, sc := range []string{"initial", "unchanged", "dtl", "dtl-jq"} {
		if r := res[sc]; r == nil || r.EntitiesPerS <= 0 || r.CPUSeconds <= 0 {
			t.Fatalf("%s: %+v", sc, r)
		}
		// What the process and the machine did meanwhile (bench_usage.go).
		if u := res[sc].Usage; u == nil || u.Cores <= 0 || u.Seconds < res[sc].Seconds || u.UserSeconds+u.SystemSeconds <= 0 {
			t.Fatalf("%s: usage %+v (run %.3fs)", sc, u, res[sc].Seconds)
		}
	}
	if res["initial"].Written != 300 || res["unchanged"].Unchanged != 300 || res["dtl"].Written != 300 {
		t.Fatalf("results: initial %+v unchanged %+v dtl %+v", res["initial"], res["unchanged"], res["dtl"])
	}
	if res["initial"].IDs != "hash" || res["dtl"].IDs != "hash" {
		t.Fatalf("ids recorded: initial %q, dtl %q, want hash", res["initial"].IDs, res["dtl"].IDs)
	}
	scaled := func(name string, f float64, edit ...func(*benchResult)) string {
		b := map[string]*benchResult{}
		for sc, r := range res {
			c := *r
			c.EntitiesPerS *= f
			c.CPUSeconds /= f
			for _, e := range edit {
				e(&c)
			}
			b[sc] = &c
		}
		data, _ := json.Marshal(b)
		path := filepath.Join(dir, name)
		os.WriteFile(path, data, 0o644)
		return path
	}
	for _, metric := range []string{"throughput", "cpu"} {
		out, code = bench("--compare", scaled("fast.json", 100), "--metric", metric)
		if code != 1 || !strings.Contains(out, "REGRESSION") || !strings.Contains(out, "4 scenario(s) regressed") {
			t.Errorf("%s against a far faster baseline: exit %d\n%s", metric, code, out)
		}
		out, code = bench("--compare", scaled("slow.json", 0.01), "--metric", metric, "--tolerance", "5")
		if code != 0 || strings.Contains(out, "REGRESSION") || !strings.Contains(out, "No scenario fell by more than 5%") {
			t.Errorf("%s against a far slower baseline: exit %d\n%s", metric, code, out)
		}
	}
	// A baseline from before --ids (no ids recorded) measured hash ids.
	old := scaled("old.json", 0.01, func(r *benchResult) { r.IDs = "" })
	if out, code = bench("--compare", old); code != 0 || strings.Contains(out, "NOT COMPARABLE") {
		t.Errorf("against a baseline without ids: exit %d\n%s", code, out)
	}
	// Other work than the baseline's fails instead of printing ratios.
	if out, code = bench("--compare", old, "--ids", "prefixed"); code != 1 || !strings.Contains(out, "NOT COMPARABLE (baseline has hash ids, this run prefixed)") ||
		!strings.Contains(out, "4 scenario(s) not comparable") {
		t.Errorf("prefixed ids against a hash baseline: exit %d\n%s", code, out)
	}
	bigger := scaled("bigger.json", 0.01, func(r *benchResult) { r.Entities = 3000 })
	if out, code = bench("--compare", bigger); code != 1 || !strings.Contains(out, "NOT COMPARABLE (baseline has 3000 entities, this run 300)") {
		t.Errorf("against a baseline of another size: exit %d\n%s", code, out)
	}
	out, code = bench("--json", "--ids", "prefixed")
	if code != 0 {
		t.Fatalf("bench --ids prefixed: exit %d\n%s", code, out)
	}
	res = nil
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &res); err != nil {
		t.Fatalf("bench --json output: %v\n%s", err, out)
	}
	if r := res["unchanged"]; r.IDs != "prefixed" || res["initial"].Written != 300 || r.Unchanged != 300 {
		t.Fatalf("prefixed ids: initial %+v unchanged %+v", res["initial"], r)
	}
	if out, code = bench("--ids", "uuid"); code != 2 || !strings.Contains(out, `--ids "uuid": want hash or prefixed`) {
		t.Errorf("--ids uuid: exit %d\n%s", code, out)
	}
	if out, code = bench("--compare", filepath.Join(dir, "missing.json")); code != 2 {
		t.Errorf("missing baseline: exit %d\n%s", code, out)
	}
}

// TestBenchIDs: each style gives n distinct ids; prefixed ones share
// their family's prefix and are not in order.
func TestBenchIDs(t *testing.T) {
	for _, style := range benchIDStyles {
		for _, n := range []int{1, 2, 997, 1000, 65536} {
			seen := map[string]bool{}
			inOrder := true
			prev := ""
			for i := range n {
				id := string(benchID(nil, style, i, n))
				if seen[id] {
					t.Fatalf("%s, n=%d: id %q twice", style, n, id)
				}
				seen[id] = true
				if style == "prefixed" && !strings.HasPrefix(id, "customer-") {
					t.Fatalf("prefixed id %q", id)
				}
				if id < prev {
					inOrder = false
				}
				prev = id
			}
			if n > 2 && inOrder {
				t.Errorf("%s, n=%d: ids in order", style, n)
			}
		}
	}
}

// benchJSON runs `ferry bench --json` with args in a work directory of
// the test's and returns its results.
func benchJSON(t *testing.T, args ...string) map[string]*benchResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"bench", "--json", "--dir", filepath.Join(t.TempDir(), "work")}, args...)...)
	cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	var res map[string]*benchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench --json output: %v\n%s", err, out.String())
	}
	return res
}

// TestBenchLarge runs the scenario of large documents: N/50 documents of
// ~10 KB, each written.
func TestBenchLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ferry bench in subprocesses")
	}
	res := benchJSON(t, "-n", "1000", "--scenarios", "large")
	if r := res["large"]; r == nil || r.Entities != 20 || r.Written != 20 || r.EntitiesPerS <= 0 || r.IDs != "" || r.RatioToFloor != 0 {
		t.Errorf("large: %+v", r)
	}
	dir := t.TempDir()
	if err := genLargeFile(dir, 5000); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "entities-large.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	ids := map[string]bool{}
	for _, line := range lines {
		var doc map[string]any
		if err := json.Unmarshal([]byte(line), &doc); err != nil || len(line) < benchLargeBytes || len(line) > benchLargeBytes+256 {
			t.Fatalf("a document of %d bytes (%v): %.80s", len(line), err, line)
		}
		ids[doc["_id"].(string)] = true
	}
	if len(lines) != 100 || len(ids) != 100 {
		t.Errorf("%d documents, %d ids, want 100", len(lines), len(ids))
	}
}

// TestBenchDatasets runs the scenarios of many pipes and datasets: 1,500
// entities over 1,000 pipes, each writing its part into a dataset of its
// own, then all of them again with nothing to write; the store check at
// the end covers the thousand datasets.
func TestBenchDatasets(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ferry bench in subprocesses")
	}
	res := benchJSON(t, "-n", "1500", "--scenarios", "datasets,datasets-unchanged")
	if r := res["datasets"]; r == nil || r.Written != 1500 || r.Unchanged != 0 || r.EntitiesPerS <= 0 || r.IDs != "hash" {
		t.Errorf("datasets: %+v", r)
	}
	if r := res["datasets-unchanged"]; r == nil || r.Written != 0 || r.Unchanged != 1500 || r.EntitiesPerS <= 0 {
		t.Errorf("datasets-unchanged: %+v", r)
	}
}

// TestBenchOwnFloors runs the floors of the scenarios that are not loads
// beside those scenarios and checks what each floor did (every line the
// same, a tenth written, every line transformed, a tenth deleted) and
// that the table says how close each scenario came to its floor.
func TestBenchOwnFloors(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ferry bench in subprocesses")
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], append([]string{"bench", "-n", "1000", "--dir", filepath.Join(dir, "work"),
			"--scenarios", "floor-unchanged,floor-changed10,floor-jq,floor-deleted10,initial,unchanged,changed10,jq,deleted10"}, args...)...)
		cmd.Env = append(os.Environ(), "FERRY_TEST_AS_CLI=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := run("--json")
	var res map[string]*benchResult
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):strings.LastIndex(out, "}")+1]), &res); err != nil {
		t.Fatalf("bench --json output: %v\n%s", err, out)
	}
	want := map[string][3]int64{ // written, unchanged, deleted
		"floor-unchanged": {0, 1000, 0},
		"floor-changed10": {100, 900, 0},
		"floor-jq":        {1000, 0, 0},
		"floor-deleted10": {0, 900, 100},
	}
	for sc, w := range want {
		r := res[sc]
		if r == nil || r.EntitiesPerS <= 0 || r.Written != w[0] || r.Unchanged != w[1] || r.Deleted != w[2] || r.RatioToFloor != 0 {
			t.Errorf("%s: %+v, want written %d, unchanged %d, deleted %d and no ratio to the load floor", sc, r, w[0], w[1], w[2])
		}
	}
	// deleted10 runs after changed10, whose lines its file keeps: it has
	// nothing to do but delete a tenth.
	if r := res["deleted10"]; r == nil || r.Written != 0 || r.Unchanged != 900 || r.Deleted != 100 {
		t.Errorf("deleted10: %+v, want 900 unchanged and 100 deleted", r)
	}
	for sc, f := range benchOwnFloor {
		if r := res[sc]; r == nil || r.OwnFloor != f || r.RatioToOwnFloor <= 0 {
			t.Errorf("%s: %+v, want a ratio to %s", sc, r, f)
		}
	}
	table := run()
	for _, s := range []string{"unchanged runs at ", " of floor-unchanged", "changed10 runs at ", "floor-jq: the jq transform alone", "jq ran at ", "deleted10 runs at "} {
		if !strings.Contains(table, s) {
			t.Errorf("the table does not say %q:\n%s", s, table)
		}
	}
}

// TestBenchCollectRecollect runs the collect and recollect scenarios on a
// small fake API: the collect writes every customer, the recollect finds
// every one unchanged and writes none.
func TestBenchCollectRecollect(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ferry bench in subprocesses")
	}
	res := benchJSON(t, "-n", "2500", "--scenarios", "collect,recollect")
	c, r := res["collect"], res["recollect"]
	if c == nil || c.Written != 2500 || c.EntitiesPerS <= 0 || c.Requests != 3 {
		t.Errorf("collect: %+v", c)
	}
	if r == nil || r.Unchanged != 2500 || r.Written != 0 || r.EntitiesPerS <= 0 || r.Requests != 3 {
		t.Errorf("recollect: %+v", r)
	}
}

// TestPeakHeapProfileShortRun: a run shorter than one sample of the heap
// still leaves a profile (a gzipped protobuf, as go tool pprof reads).
func TestPeakHeapProfileShortRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "heap.out")
	stop, err := peakHeapProfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("profile of %d bytes is not gzip: %v", len(b), err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil || len(raw) == 0 {
		t.Fatalf("profile decompresses to %d bytes (%v)", len(raw), err)
	}
}
