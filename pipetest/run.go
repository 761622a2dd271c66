package pipetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/connectors"
	"github.com/ferrydata/ferry/engine/secrets"
	"github.com/ferrydata/ferry/pipes"
	"github.com/ferrydata/ferry/pipes/all"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
)

// Options say what to test and how.
type Options struct {
	// Path is a config (a JSON file or a directory of them) or a connector
	// directory (one holding manifest.json).
	Path string
	// Dir is the test directory; "" means the default: "test" beside the
	// config, or inside the connector directory.
	Dir string
	// Env holds $ENV values on top of the spec's (ferry test --env).
	Env map[string]string
	// Pipes restricts the comparison (not the run) to these pipes.
	Pipes []string
	// Update rewrites the expected files from the output instead of
	// comparing.
	Update bool
	// Registry builds the component registry (default all.Registry).
	Registry func() *engine.Registry
	// Logger receives the engine's warnings (default: discarded).
	Logger *slog.Logger
	// TempDir is where the temporary store goes ("" : os.TempDir()).
	TempDir string
}

// Status of one pipe's comparison.
type Status string

// Statuses.
const (
	// Passed: the output equals the expected file.
	Passed Status = "ok"
	// Failed: the output differs (see PipeResult.Diff).
	Failed Status = "fail"
	// Untested: the pipe has no expected file (Update writes one).
	Untested Status = "untested"
	// Updated: Update wrote the expected file (it was missing or differed).
	Updated Status = "updated"
	// Errored: the pipe's output could not be produced (a share plan that
	// would trip the delete circuit breaker).
	Errored Status = "error"
)

// PipeResult is one pipe's outcome.
type PipeResult struct {
	Pipe   string `json:"pipe"`
	Status Status `json:"status"`
	// File is the expected file, relative to the test directory.
	File string `json:"file"`
	// Entities counts the output entities compared (after ignore_deletes).
	Entities int `json:"entities"`
	// Kind says what the output is: "dataset", "share plan" or "sink"
	// (what an external sink would have been sent).
	Kind string `json:"kind"`
	// Diff is the unified diff from the expected to the actual output.
	Diff  string `json:"diff,omitempty"`
	Error string `json:"error,omitempty"`
}

// Result is what a test run found.
type Result struct {
	// Path and Dir are the tested config and the test directory.
	Path string `json:"path"`
	Dir  string `json:"dir"`
	// Runs are the pipe runs, in order.
	Runs []engine.RunRecord `json:"runs"`
	// RunError is set when a run failed or the pipes did not settle;
	// nothing was compared then.
	RunError string       `json:"run_error,omitempty"`
	Pipes    []PipeResult `json:"pipes"`
	// Notes say what the test replaced or left out (input pipes without
	// test data, captured sinks, skipped pipes).
	Notes []string `json:"notes"`
	// Diagnostics are the config's warnings (errors fail Run instead).
	Diagnostics engine.Diagnostics `json:"diagnostics,omitempty"`
}

// Passed reports whether the test passed: no run failed and every
// compared pipe matched (updated counts as passed).
func (r *Result) Passed() bool {
	if r.RunError != "" {
		return false
	}
	for _, p := range r.Pipes {
		if p.Status == Failed || p.Status == Errored {
			return false
		}
	}
	return true
}

// Compared counts the pipes whose output was compared or written.
func (r *Result) Compared() int {
	n := 0
	for _, p := range r.Pipes {
		if p.Status != Untested {
			n++
		}
	}
	return n
}

// SetupError is a problem with the test itself: a missing test directory,
// a bad test.json, a config that does not load, a testdata or expected
// file that names no pipe. Diagnostics carries the config's diagnostics
// when it did not compile.
type SetupError struct {
	Err         error
	Diagnostics engine.Diagnostics
}

// Error returns the problem (the diagnostics are separate).
func (e *SetupError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *SetupError) Unwrap() error { return e.Err }

func setupf(format string, args ...any) error {
	return &SetupError{Err: fmt.Errorf(format, args...)}
}

// DefaultDir returns the test directory of path: path/test for a
// connector directory, else "test" beside the config.
func DefaultDir(path string) string {
	if isConnector(path) {
		return filepath.Join(path, DirName)
	}
	abs, err := filepath.Abs(path) // "." names the directory it is in, not its parent's
	if err != nil {
		return filepath.Join(filepath.Dir(filepath.Clean(path)), DirName)
	}
	dir := filepath.Join(filepath.Dir(abs), DirName)
	if !filepath.IsAbs(path) {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, dir); err == nil {
				return rel
			}
		}
	}
	return dir
}

func isConnector(path string) bool {
	fi, err := os.Stat(filepath.Join(path, "manifest.json"))
	return err == nil && !fi.IsDir()
}

// Run runs the test of opts.Path. A *SetupError means the test could not
// run (exit 2 in ferry test); otherwise the Result says what passed.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if _, err := os.Stat(opts.Path); err != nil {
		return nil, setupf("%s: no such file or directory", opts.Path)
	}
	dir := opts.Dir
	if dir == "" {
		dir = DefaultDir(opts.Path)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, setupf("no test directory %s (a test directory holds test.json, testdata/<pipe>.json and expected/<pipe>.json; see docs/testing.md)", dir)
	}
	spec, err := LoadSpec(dir)
	if err != nil {
		return nil, &SetupError{Err: err}
	}
	t := &tester{opts: opts, dir: dir, spec: spec, res: &Result{Path: opts.Path, Dir: dir, Runs: []engine.RunRecord{}, Pipes: []PipeResult{}, Notes: []string{}}}
	if t.opts.Registry == nil {
		t.opts.Registry = all.Registry
	}
	if t.opts.Logger == nil {
		t.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := t.load(ctx); err != nil {
		return nil, err
	}
	if err := t.run(ctx); err != nil {
		return nil, err
	}
	return t.res, nil
}

// tester is one test run.
type tester struct {
	opts Options
	dir  string
	spec *Spec
	res  *Result

	plan     *engine.Plan
	store    engine.Store
	testdata map[string]string // pipe -> testdata file
	expected map[string]string // pipe -> expected file
	records  map[string][]map[string]any
	captured map[string]bool // pipes whose external sink writes a dataset
	skipped  map[string]bool
}

// load loads the config and the connector instances, patches them for the
// test and compiles the result.
func (t *tester) load(ctx context.Context) error {
	spec, dir := t.spec, t.dir
	env, err := spec.env(filepath.Join(dir, SpecFile), t.opts.Env)
	if err != nil {
		return &SetupError{Err: err}
	}
	lookupEnv := func(name string) (string, bool) { v, ok := env[name]; return v, ok }

	connector := isConnector(t.opts.Path)
	cfg := &engine.Config{}
	if !connector {
		cfg, err = engine.LoadConfig([]string{t.opts.Path}, lookupEnv)
		if err != nil {
			var ce *engine.ConfigError
			if errors.As(err, &ce) {
				return &SetupError{Err: errors.New("the config does not load"), Diagnostics: ce.Diagnostics}
			}
			return &SetupError{Err: err}
		}
	}
	insts := spec.Connectors
	if connector && len(insts) == 0 {
		insts = []Instance{{}}
	}
	for i, si := range insts {
		in, err := t.instance(si, connector)
		if err != nil {
			return setupf("%s: connectors[%d]: %v", filepath.Join(dir, SpecFile), i, err)
		}
		exp, err := in.Expansion(lookupEnv)
		if err != nil {
			return setupf("%s: connectors[%d]: %v", filepath.Join(dir, SpecFile), i, err)
		}
		exp.AddTo(cfg)
	}
	// Systems are never contacted in a test: every secret is a
	// placeholder.
	secrets.Resolve(ctx, cfg, func(ctx context.Context, system, name string) (string, bool, error) {
		return "ferry-test-secret-" + name, true, nil
	})
	if err := cfg.Check(); err != nil {
		return &SetupError{Err: errors.New("the config does not load"), Diagnostics: cfg.Diagnostics}
	}
	plan, err := engine.Compile(cfg, t.opts.Registry(), t.opts.Logger)
	if err != nil {
		return &SetupError{Err: errors.New("the config does not compile"), Diagnostics: plan.Diagnostics}
	}
	if err := t.files(plan); err != nil {
		return err
	}
	if err := t.patch(plan); err != nil {
		return err
	}
	if plan, err = engine.Compile(cfg, t.opts.Registry(), t.opts.Logger); err != nil {
		return &SetupError{Err: errors.New("the config as patched for the test does not compile"), Diagnostics: plan.Diagnostics}
	}
	t.res.Diagnostics = plan.Diagnostics.Warnings()
	t.plan = plan
	return t.offline(plan)
}

// instance turns a spec instance into a connector instance.
func (t *tester) instance(si Instance, connector bool) (*connectors.Instance, error) {
	dir := si.Dir
	switch {
	case dir == "" && connector:
		dir = t.opts.Path
	case dir == "":
		return nil, errors.New(`"dir" is required (the connector directory, relative to the test directory)`)
	default:
		dir = filepath.Join(t.dir, filepath.FromSlash(dir))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if !isConnector(abs) {
		return nil, fmt.Errorf("%s is not a connector directory (no manifest.json)", dir)
	}
	in := &connectors.Instance{ID: si.System, Connector: connectors.Name(abs), Dir: abs, Params: si.Parameters,
		Datatypes: si.Datatypes, Share: si.Share, Directions: si.Directions, History: si.History, Connected: DefaultConnected}
	if in.ID == "" {
		in.ID = in.Connector
	}
	if si.Connected != "" {
		if in.Connected, err = time.Parse(time.RFC3339, si.Connected); err != nil {
			return nil, fmt.Errorf("connected %q: want an RFC 3339 time", si.Connected)
		}
	}
	return in, in.Check()
}

// files reads the testdata and expected directories and checks that every
// file names a pipe of the plan.
func (t *tester) files(plan *engine.Plan) error {
	var err error
	if t.testdata, err = jsonFiles(filepath.Join(t.dir, TestdataDir)); err != nil {
		return &SetupError{Err: err}
	}
	if t.expected, err = jsonFiles(filepath.Join(t.dir, ExpectedDir)); err != nil {
		return &SetupError{Err: err}
	}
	var ids []string
	for _, p := range plan.Pipes {
		ids = append(ids, p.ID)
	}
	var bad []string
	for _, m := range []map[string]string{t.testdata, t.expected} {
		for _, name := range sortedKeys(m) {
			if plan.Pipe(name) == nil {
				bad = append(bad, fmt.Sprintf("%s: no pipe %q in the config%s", m[name], name, closest(name, ids)))
			}
		}
	}
	for _, name := range sortedKeys(t.spec.Pipes) {
		if plan.Pipe(name) == nil {
			bad = append(bad, fmt.Sprintf("%s: pipes: no pipe %q in the config%s", filepath.Join(t.dir, SpecFile), name, closest(name, ids)))
		}
	}
	for _, name := range t.opts.Pipes {
		if plan.Pipe(name) == nil {
			bad = append(bad, fmt.Sprintf("no pipe %q in the config%s", name, closest(name, ids)))
		}
	}
	if len(bad) > 0 {
		return setupf("%s", strings.Join(bad, "\n"))
	}
	return nil
}

// patch rewrites the loaded config for the test: input pipes read their
// test data, external sinks write a dataset.
func (t *tester) patch(plan *engine.Plan) error {
	t.records = map[string][]map[string]any{}
	t.captured = map[string]bool{}
	t.skipped = map[string]bool{}
	writers := map[string]string{}
	for _, p := range plan.Pipes {
		if p.Output != "" {
			writers[p.Output] = p.ID
		}
	}
	for _, p := range plan.Pipes {
		raw := p.Comp.Raw
		if t.spec.pipe(p.ID).Skip {
			t.skipped[p.ID] = true
			t.note("%s: skipped (test.json)", p.ID)
			continue
		}
		file, hasData := t.testdata[p.ID]
		var data []map[string]any
		if hasData {
			var err error
			if data, err = readEntities(file); err != nil {
				return &SetupError{Err: err}
			}
		}
		switch {
		case p.Sharer != nil:
			if hasData {
				t.records[p.ID] = data
			}
		case isInput(p):
			src, _ := raw["source"].(map[string]any)
			if hasData {
				ents := make([]any, len(data))
				for i, e := range data {
					ents[i] = e
				}
				raw["source"] = map[string]any{"type": "embedded", "entities": ents}
				break
			}
			if keepSource(src) {
				break
			}
			raw["source"] = map[string]any{"type": "embedded", "entities": []any{}}
			t.note("%s: no %s/%s.json: its %v source reads nothing in the test", p.ID, TestdataDir, p.ID, src["type"])
		case hasData:
			return setupf("%s: pipe %q reads datasets; test data replaces the source of an input pipe, or answers a share pipe's lookups", file, p.ID)
		}
		if _, tx := p.Sink.(engine.TxSink); !tx && !isNullSink(raw) {
			if w, taken := writers[p.ID]; taken {
				return setupf("pipe %q: its %v sink is captured in dataset %q for the test, which pipe %q writes", p.ID, sinkType(raw), p.ID, w)
			}
			t.note("%s: its %v sink is captured: the expected output is what it would be sent", p.ID, sinkType(raw))
			raw["sink"] = map[string]any{"type": "dataset", "dataset": p.ID, "deletion_tracking": false}
			t.captured[p.ID] = true
		}
	}
	return nil
}

func (t *tester) note(format string, args ...any) {
	t.res.Notes = append(t.res.Notes, fmt.Sprintf(format, args...))
}

// isInput reports whether p's source reads from outside the store (no
// input datasets), the pipes whose source test data replaces.
func isInput(p *engine.Pipe) bool {
	_, ok := p.Source.(engine.InputDatasets)
	return !ok || len(p.Inputs) == 0
}

// keepSource reports whether an input pipe's source may run as it is in a
// test: an embedded source, or a json source reading a local file.
func keepSource(src map[string]any) bool {
	switch src["type"] {
	case "embedded":
		return true
	case "json":
		url, _ := src["url"].(string)
		return src["system"] == nil && !strings.Contains(url, "://")
	}
	return false
}

func isNullSink(raw map[string]any) bool {
	sink, _ := raw["sink"].(map[string]any)
	return sink != nil && sink["type"] == "null"
}

func sinkType(raw map[string]any) any {
	sink, _ := raw["sink"].(map[string]any)
	return sink["type"]
}

// blockedTransport is every system's HTTP transport in a test: it refuses
// every request, naming the system and the request.
type blockedTransport struct{ system string }

func (b blockedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("a test never reaches a system: system %q was asked for %s %s; give the pipe test data (%s/<pipe>.json), or skip it in %s",
		b.system, req.Method, req.URL.Redacted(), TestdataDir, SpecFile)
}

// offline makes every system refuse requests and answers share lookups
// from test data.
func (t *tester) offline(plan *engine.Plan) error {
	noSleep := func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	for _, id := range sortedKeys(plan.Systems) {
		switch sys := plan.Systems[id].(type) {
		case *rest.System:
			hc := &http.Client{Transport: blockedTransport{system: id}}
			c, err := httpclient.New(sys.Client.Config(), httpclient.WithHTTPClient(hc), httpclient.WithSleep(noSleep), httpclient.WithLogger(t.opts.Logger))
			if err != nil {
				return setupf("system %q: %v", id, err)
			}
			sys.Client = c
		case *pipes.URLSystem:
			sys.Client = &http.Client{Transport: blockedTransport{system: id}}
		}
	}
	for _, p := range plan.Pipes {
		if p.Sharer == nil || t.skipped[p.ID] {
			continue
		}
		sh, ok := p.Sharer.(*rest.Share)
		if !ok {
			return setupf("pipe %q: its share transform (%T) cannot be planned without its system", p.ID, p.Sharer)
		}
		lookup, err := t.shareLookup(p, sh)
		if err != nil {
			return &SetupError{Err: err}
		}
		sh.SetLookup(lookup)
	}
	return nil
}

// shareLookup answers a share pipe's lookups with the records its system
// holds in the test: its test data when it has some (a key not among them
// is a 404); else the system's records as its collect pipes (those that
// stamp $origin from the same share dataset) collected them from their
// test data, a deleted one being a 404; else, without a collect pipe in
// the config, the entity's $based_on (the system holds what was collected;
// no $based_on: not found). Records are read from the store at the first
// lookup, after the other pipes ran.
func (t *tester) shareLookup(p *engine.Pipe, sh *rest.Share) (rest.LookupFunc, error) {
	var collectors []*engine.Pipe
	for _, q := range t.plan.Pipes {
		for _, tr := range q.Transforms {
			if sd, ok := tr.(engine.ShareDatasets); ok && slices.Contains(sd.ShareDatasets(), sh.ShareDataset()) && q.Output != "" && !t.skipped[q.ID] {
				collectors = append(collectors, q)
				break
			}
		}
	}
	records, fromTestdata := t.records[p.ID]
	if !fromTestdata && len(collectors) == 0 {
		return func(ctx context.Context, e engine.Entity, key any) (map[string]any, bool, error) {
			b, ok := e["$based_on"].(map[string]any)
			return b, ok, nil
		}, nil
	}
	var (
		once  sync.Once
		byKey map[string]map[string]any
		err   error
	)
	index := func(ctx context.Context) {
		byKey = map[string]map[string]any{}
		if fromTestdata {
			for i, r := range records {
				k, ok, kerr := sh.Key(ctx, r)
				if kerr != nil || !ok {
					err = fmt.Errorf("%s/%s.json: record %d has no primary key (%v)", TestdataDir, p.ID, i, kerr)
					return
				}
				byKey[keyText(k)] = r
			}
			return
		}
		for _, q := range collectors {
			ents, lerr := latest(ctx, t.store, q.Output)
			if lerr != nil {
				err = lerr
				return
			}
			for _, e := range ents {
				k, ok, kerr := sh.Key(ctx, e)
				if kerr != nil || !ok || e["_deleted"] == true {
					continue
				}
				rec := map[string]any{}
				for name, v := range e {
					if !strings.HasPrefix(name, "_") && !strings.HasPrefix(name, "$") {
						rec[name] = v
					}
				}
				byKey[keyText(k)] = rec
			}
		}
	}
	return func(ctx context.Context, e engine.Entity, key any) (map[string]any, bool, error) {
		once.Do(func() { index(ctx) })
		if err != nil {
			return nil, false, err
		}
		r, ok := byKey[keyText(key)]
		return r, ok, nil
	}, nil
}

// keyText renders a primary key so that 17 and "17" match.
func keyText(k any) string {
	if l, ok := k.([]any); ok {
		parts := make([]string, len(l))
		for i, p := range l {
			parts[i] = keyText(p)
		}
		return strings.Join(parts, "\x00")
	}
	return fmt.Sprint(k)
}

// run runs the pipes on a temporary store, plans the share pipes and
// compares (or writes) the outputs.
func (t *tester) run(ctx context.Context) (err error) {
	tmp, err := os.MkdirTemp(t.opts.TempDir, "ferry-test-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	store, err := boltstore.Open(tmp, boltstore.Options{NoSync: true})
	if err != nil {
		return err
	}
	defer store.Close()
	t.store = store
	eng := engine.New(store, t.plan, t.opts.Logger)

	var runIDs, shareIDs []string
	for _, p := range t.plan.Pipes {
		switch {
		case t.skipped[p.ID]:
		case p.Sharer != nil:
			shareIDs = append(shareIDs, p.ID)
		default:
			runIDs = append(runIDs, p.ID)
		}
	}
	if len(runIDs) > 0 {
		recs, err := eng.RunUntilStable(ctx, runIDs, engine.RunOptions{}, 10)
		t.res.Runs = append(t.res.Runs, recs...)
		if err != nil {
			t.res.RunError = err.Error()
			return nil
		}
	}
	outputs := map[string][]map[string]any{}
	kinds := map[string]string{}
	errs := map[string]string{}
	for _, id := range shareIDs {
		var ents []map[string]any
		plan, err := eng.PlanShare(ctx, id, engine.RunOptions{}, func(a *engine.ShareAction) {
			ents = append(ents, sent(a))
		})
		if err != nil {
			t.res.RunError = fmt.Sprintf("share pipe %q: %v", id, err)
			return nil
		}
		if plan.BreakerError != "" {
			errs[id] = "the run would send nothing: " + plan.BreakerError
		}
		outputs[id], kinds[id] = ents, "share plan"
	}
	for _, p := range t.plan.Pipes {
		if p.Output == "" || t.skipped[p.ID] || p.Sharer != nil {
			continue
		}
		ents, err := latest(ctx, store, p.Output)
		if err != nil {
			return err
		}
		outputs[p.ID], kinds[p.ID] = ents, "dataset"
		if t.captured[p.ID] {
			kinds[p.ID] = "sink"
		}
	}
	return t.compare(outputs, kinds, errs)
}

// sent is a share pipe's test output per entity: what the run would do
// ($last_operation, as the share dataset names it) and send: the primary
// key ($key) and the payload of an insert or update ($payload), or why it
// fails ($error, $failure).
func sent(a *engine.ShareAction) map[string]any {
	e := map[string]any{"_id": a.ID, "$last_operation": string(a.Op)}
	if a.Key != nil {
		e["$key"] = a.Key
	}
	if a.Op == engine.ShareInsert || a.Op == engine.ShareUpdate {
		e["$payload"] = a.Payload
	}
	if a.Failed() {
		e["$error"] = a.Error
		e["$failure"] = string(a.Failure)
	}
	return e
}

// latest returns the latest version of every entity of a dataset,
// deleted ones included.
func latest(ctx context.Context, store engine.Store, dataset string) ([]map[string]any, error) {
	var out []map[string]any
	_, err := store.Scan(ctx, dataset, engine.ScanOptions{LatestOnly: true}, func(r engine.Record) error {
		e, err := r.Entity()
		if err != nil {
			return fmt.Errorf("dataset %q: %w", dataset, err)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		if _, ok, derr := store.Dataset(ctx, dataset); derr == nil && !ok {
			return nil, nil // never written: no output
		}
		return nil, err
	}
	return out, nil
}

// compare compares (or, with Update, writes) the outputs.
func (t *tester) compare(outputs map[string][]map[string]any, kinds, errs map[string]string) error {
	var ids []string
	if len(t.opts.Pipes) > 0 {
		ids = t.opts.Pipes
	} else {
		for id := range outputs {
			if t.spec.compared(id) {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
	}
	if len(t.opts.Pipes) == 0 {
		var stray []string
		for _, id := range sortedKeys(t.expected) {
			if _, ok := outputs[id]; !ok || !t.spec.compared(id) {
				stray = append(stray, fmt.Sprintf("%s: pipe %q is not compared (skipped, \"compare\": false, or it writes no dataset); delete the file", t.expected[id], id))
			}
		}
		if len(stray) > 0 {
			return setupf("%s", strings.Join(stray, "\n"))
		}
	}
	for _, id := range ids {
		rel := filepath.ToSlash(filepath.Join(ExpectedDir, id+".json"))
		r := PipeResult{Pipe: id, File: rel, Kind: kinds[id]}
		ents, ok := outputs[id]
		if !ok {
			return setupf("pipe %q has no output to compare (no dataset sink, or skipped)", id)
		}
		if msg := errs[id]; msg != "" {
			r.Status, r.Error = Errored, msg
			t.res.Pipes = append(t.res.Pipes, r)
			continue
		}
		ig, err := newIgnorer(append(slices.Clone(t.spec.Ignore), t.spec.pipe(id).Ignore...))
		if err != nil {
			return setupf("%s: pipe %q: %v", filepath.Join(t.dir, SpecFile), id, err)
		}
		deletes := t.spec.ignoreDeletes(id)
		actual, n, err := canonical(ents, ig, deletes)
		if err != nil {
			return fmt.Errorf("pipe %q: %w", id, err)
		}
		r.Entities = n
		path := filepath.Join(t.dir, filepath.FromSlash(rel))
		_, has := t.expected[id]
		var want []byte
		if has {
			exp, err := readEntities(path)
			if err != nil {
				return &SetupError{Err: err}
			}
			if want, _, err = canonical(exp, ig, deletes); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		switch {
		case t.opts.Update:
			r.Status = Passed
			if old, err := os.ReadFile(path); err != nil || string(old) != string(actual) {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(path, actual, 0o644); err != nil {
					return err
				}
				r.Status = Updated
			}
		case !has:
			r.Status = Untested
		case string(want) == string(actual):
			r.Status = Passed
		default:
			r.Status = Failed
			r.Diff = Unified(rel, id+" (actual)", string(want), string(actual), 3)
		}
		t.res.Pipes = append(t.res.Pipes, r)
	}
	return nil
}

// closest suggests the id nearest to name: ` (did you mean "x"?)`.
func closest(name string, ids []string) string {
	best, bestD := "", 4
	for _, id := range ids {
		if d := distance(name, id); d < bestD {
			best, bestD = id, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
