package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/adhocore/gronx"
)

// FieldError is a constructor's complaint about one field of its config;
// Pointer is relative to the component's config object.
type FieldError struct {
	Pointer string
	Msg     string
}

// Error renders the pointer (if any) and the message.
func (e *FieldError) Error() string {
	if e.Pointer == "" {
		return e.Msg
	}
	return e.Pointer + ": " + e.Msg
}

// Fieldf builds a FieldError.
func Fieldf(pointer, format string, args ...any) error {
	return &FieldError{Pointer: pointer, Msg: fmt.Sprintf(format, args...)}
}

// Pump says when a pipe runs on its own.
type Pump struct {
	Interval     time.Duration // 0 = none
	Cron         string        // cron expression; wins over Interval
	Mode         string        // scheduled | manual | off
	RunAtStartup bool
	// Signalled: runs when an input dataset changes.
	Signalled bool
}

// Pipe is a compiled pipe: every component built, ready to run.
type Pipe struct {
	ID                 string
	Comp               *Component
	Source             Source
	Transforms         []Transform
	Sink               Sink
	BatchSize          int
	CheckpointInterval int
	Pump               Pump
	Inputs             []string // datasets the source reads
	// Hops are the datasets the transforms read while they run (DTL hops,
	// apply-hops, lookup-entity; transform-collect-rest's share dataset),
	// each once. They order the pipe after their writers (unless that
	// would close a cycle) and a change in one signals the pipe, but they
	// are not inputs: they do not count for populated checks or for
	// "behind", and a change in a hopped dataset does not re-process
	// source entities read before (Ferry has no dependency tracking; a
	// rescan does that).
	Hops   []string
	Output string // dataset the sink writes ("" for none)
	// Sharer is the pipe's last transform when it writes to an external
	// system (a share pipe, see [Sharer]); Transforms still lists it.
	Sharer Sharer
	// Share holds a share pipe's write-back settings.
	Share ShareOptions
}

// transforms returns the transforms the producer runs: all of them, or for
// a share pipe those before the Sharer.
func (p *Pipe) transforms() []Transform {
	if p.Sharer != nil {
		return p.Transforms[:len(p.Transforms)-1]
	}
	return p.Transforms
}

// HoppedDatasets is implemented by transforms that read other datasets
// while they run (joins). The engine adds them to [Pipe.Hops].
type HoppedDatasets interface {
	HoppedDatasets() []string
}

// ShareDatasets is implemented by transforms that hop into a connector's
// share dataset (transform-collect-rest stamps $origin from it). That
// dataset is written by the connector's share pipe, which a config may
// leave out, so a share dataset nobody writes is not warned about.
type ShareDatasets interface {
	ShareDatasets() []string
}

// Plan is a compiled config.
type Plan struct {
	Pipes       []*Pipe
	Systems     map[string]any
	Diagnostics Diagnostics
	// Redactor scrubs the config's secret values from run errors and
	// records (the engine) and from what the HTTP API answers; never nil
	// in a compiled plan. Values resolved later (webhook secrets) may be
	// added to it.
	Redactor *Redactor
	byID     map[string]*Pipe
}

// Pipe returns a compiled pipe by id.
func (p *Plan) Pipe(id string) *Pipe { return p.byID[id] }

// Readers returns the pipes to signal when dataset changes: those whose
// source reads it and those that hop into it, except a pipe hopping into
// the dataset it writes itself (share and event pipes look up their own
// sink; signalling them would only re-run them for nothing).
func (p *Plan) Readers(dataset string) []*Pipe {
	var out []*Pipe
	for _, pp := range p.Pipes {
		if slices.Contains(pp.Inputs, dataset) || (pp.Output != dataset && slices.Contains(pp.Hops, dataset)) {
			out = append(out, pp)
		}
	}
	return out
}

// Default batching, as in Sesam.
const (
	DefaultBatchSize          = 100
	DefaultCheckpointInterval = 100
)

type compiler struct {
	reg     *Registry
	cfg     *Config
	log     *slog.Logger
	diags   Diagnostics
	systems map[string]any
	// unsupported collects "kind:type" -> pipe ids for one report each.
	unsupported map[string][]string
	// transformPtr and transformPart name the transform being compiled
	// ("/transform/0", "transform[0]") for diagnostics.
	transformPtr, transformPart string
}

// Compile validates every component of cfg against its schema and builds
// it. It does no I/O. All problems are collected; the error is a
// *ConfigError when any is an error (warnings alone do not fail).
func Compile(cfg *Config, reg *Registry, logger *slog.Logger) (*Plan, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &compiler{reg: reg, cfg: cfg, log: logger, systems: map[string]any{}, unsupported: map[string][]string{}}
	c.diags = append(c.diags, cfg.Diagnostics...)
	plan := &Plan{Systems: c.systems, Redactor: cfg.Redactor, byID: map[string]*Pipe{}}
	if plan.Redactor == nil {
		plan.Redactor = &Redactor{}
	}
	for _, s := range cfg.Systems {
		c.system(s)
	}
	for _, comp := range cfg.Pipes {
		if p := c.pipe(comp); p != nil {
			plan.Pipes = append(plan.Pipes, p)
			plan.byID[p.ID] = p
		}
	}
	keys := make([]string, 0, len(c.unsupported))
	for k := range c.unsupported {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ids := c.unsupported[k]
		c.diags = append(c.diags, Diagnostic{Severity: SevError, Message: fmt.Sprintf("not supported yet: %s (%d: %s)", k, len(ids), strings.Join(ids, ", "))})
	}
	c.graph(plan)
	plan.Diagnostics = c.diags
	if len(c.diags.Errors()) > 0 {
		return plan, &ConfigError{Diagnostics: c.diags}
	}
	return plan, nil
}

func (c *compiler) errorf(comp *Component, ptr, format string, args ...any) {
	d := Diagnostic{Severity: SevError, File: comp.File, Pointer: comp.Pointer + ptr, Message: fmt.Sprintf(format, args...)}
	d.setComponent(comp, ptr, c.partFor(ptr))
	c.diags = append(c.diags, d)
}

// partFor is the transform index for pointers inside the transform being
// compiled ("" otherwise: the part is derived from the pointer).
func (c *compiler) partFor(ptr string) string {
	if c.transformPtr != "" && (ptr == c.transformPtr || strings.HasPrefix(ptr, c.transformPtr+"/")) {
		return c.transformPart
	}
	return ""
}

func (c *compiler) warnf(comp *Component, ptr, format string, args ...any) {
	d := Diagnostic{Severity: SevWarning, File: comp.File, Pointer: comp.Pointer + ptr, Message: fmt.Sprintf(format, args...)}
	d.setComponent(comp, ptr, c.partFor(ptr))
	c.diags = append(c.diags, d)
}

// check validates cfg (at ptr within comp) against a schema.
func (c *compiler) check(comp *Component, ptr string, sch *compiledSchema, cfg map[string]any) bool {
	probs, err := sch.validate(cfg)
	if err != nil {
		c.errorf(comp, ptr, "validating: %v", err)
		return false
	}
	ok := true
	for _, p := range probs {
		if p.warning {
			c.warnf(comp, ptr+p.pointer, "%s", p.message)
			continue
		}
		ok = false
		c.errorf(comp, ptr+p.pointer, "%s", p.message)
	}
	return ok
}

func (c *compiler) build(comp *Component, ptr string, pipe string) *Build {
	return &Build{Pipe: pipe, Path: comp.Pointer + ptr, Config: c.cfg, Logger: c.log.With("pipe", pipe), Registry: c.reg, systems: c.systems,
		warn: func(p, msg string) { c.warnf(comp, ptr+p, "%s", msg) }}
}

// System returns a compiled system by id.
func (b *Build) System(id string) (any, error) {
	s, ok := b.systems[id]
	if !ok {
		return nil, fmt.Errorf("unknown system %q", id)
	}
	if s == nil {
		return nil, fmt.Errorf("system %q failed to compile", id)
	}
	return s, nil
}

func (c *compiler) ctorErr(comp *Component, ptr string, err error) {
	var fe *FieldError
	if errors.As(err, &fe) {
		c.errorf(comp, ptr+fe.Pointer, "%s", fe.Msg)
		return
	}
	c.errorf(comp, ptr, "%v", err)
}

func (c *compiler) system(comp *Component) {
	name := strings.TrimPrefix(comp.Type, "system:")
	e, ok := c.reg.lookup(KindSystem, name)
	if !ok {
		c.errorf(comp, "/type", "unknown system type %q (known: %s)", comp.Type, knownList(c.reg, KindSystem, "system:"))
		c.systems[comp.ID] = nil
		return
	}
	if e.build == nil {
		c.unsupported["system:"+name] = append(c.unsupported["system:"+name], comp.ID)
		c.systems[comp.ID] = nil
		return
	}
	sch, err := c.reg.schemaFor(KindSystem, name)
	if err != nil {
		c.errorf(comp, "", "%v", err)
		return
	}
	if !c.check(comp, "", sch, comp.Raw) {
		c.systems[comp.ID] = nil
		return
	}
	sys, err := e.build.(SystemFunc)(c.build(comp, "", ""), comp.Raw)
	if err != nil {
		c.ctorErr(comp, "", err)
		c.systems[comp.ID] = nil
		return
	}
	c.systems[comp.ID] = sys
}

func knownList(r *Registry, kind Kind, prefix string) string {
	var names []string
	for _, n := range r.Names(kind) {
		if e, _ := r.lookup(kind, n); e.build != nil {
			names = append(names, prefix+n)
		}
	}
	return strings.Join(names, ", ")
}

func (c *compiler) pipe(comp *Component) *Pipe {
	sch, err := c.reg.pipeSchema()
	if err != nil {
		c.errorf(comp, "", "%v", err)
		return nil
	}
	// A pipe-level schema error does not stop here: the source, transforms
	// and sink are still checked so that every problem is reported at once.
	ok := c.check(comp, "", sch, comp.Raw)
	p := &Pipe{ID: comp.ID, Comp: comp, BatchSize: DefaultBatchSize, CheckpointInterval: DefaultCheckpointInterval}
	if n, has := intField(comp.Raw, "batch_size"); has {
		p.BatchSize = n
	}
	if n, has := intField(comp.Raw, "checkpoint_interval"); has {
		p.CheckpointInterval = n
	}
	// Source.
	srcCfg, _ := comp.Raw["source"].(map[string]any)
	// A missing or non-object source was already reported by the pipe
	// schema when that failed.
	if srcCfg != nil || ok {
		if src, good := c.component(comp, KindSource, "/source", srcCfg); good {
			p.Source = src.(Source)
			if in, isIn := p.Source.(InputDatasets); isIn {
				p.Inputs = in.InputDatasets()
			}
		} else {
			ok = false
		}
	}
	// Transforms.
	for i, tc := range transformList(comp.Raw["transform"], "/transform") {
		ptr := tc.ptr
		c.transformPtr, c.transformPart = ptr, fmt.Sprintf("transform[%d]", i)
		t, good := c.component(comp, KindTransform, ptr, tc.cfg)
		c.transformPtr, c.transformPart = "", ""
		if good {
			p.Transforms = append(p.Transforms, t.(Transform))
			if h, isHop := t.(HoppedDatasets); isHop {
				for _, ds := range h.HoppedDatasets() {
					if !slices.Contains(p.Hops, ds) {
						p.Hops = append(p.Hops, ds)
					}
				}
			}
		} else {
			ok = false
		}
	}
	// Sink: default is a dataset sink named after the pipe.
	sinkCfg, _ := comp.Raw["sink"].(map[string]any)
	if sinkCfg == nil {
		sinkCfg = map[string]any{}
	}
	if _, has := sinkCfg["type"]; !has {
		cp := make(map[string]any, len(sinkCfg)+1)
		for k, v := range sinkCfg {
			cp[k] = v
		}
		cp["type"] = "dataset"
		sinkCfg = cp
	}
	if s, good := c.component(comp, KindSink, "/sink", sinkCfg); good {
		p.Sink = s.(Sink)
		p.Output = p.Sink.OutputDataset()
	} else {
		ok = false
	}
	if ok && !c.share(comp, p) {
		ok = false
	}
	if pump, good := c.pump(comp); good {
		p.Pump = pump
		if _, push := p.Source.(PushSource); push {
			if m, _ := comp.Raw["pump"].(map[string]any); m["mode"] == nil {
				p.Pump.Mode = "off" // endpoint sources have no pump
			}
		}
	} else {
		ok = false
	}
	if !ok {
		return nil
	}
	return p
}

// share recognises a share pipe (a Sharer as the last transform) and reads
// its write-back settings. It reports false after reporting an error.
func (c *compiler) share(comp *Component, p *Pipe) bool {
	list := transformList(comp.Raw["transform"], "/transform")
	for i, t := range p.Transforms {
		sh, ok := t.(Sharer)
		if !ok {
			continue
		}
		if i != len(p.Transforms)-1 {
			c.errorf(comp, list[i].ptr, "a share transform must be the pipe's last transform (it writes to the system; what follows would never see the outcome)")
			return false
		}
		if _, tx := p.Sink.(TxSink); !tx {
			c.errorf(comp, "/sink", "a share pipe needs a dataset sink for its share dataset (the record of what was written)")
			return false
		}
		if sc, _ := comp.Raw["sink"].(map[string]any); sc != nil && (sc["circuit_breaker_threshold_count"] != nil || sc["circuit_breaker_threshold_factor"] != nil) {
			c.errorf(comp, "/sink", "a share pipe's sink cannot have a circuit breaker (every entity changes the share dataset); limit deletes with pump.delete_circuit_breaker_count and _factor")
			return false
		}
		if ds := sh.ShareDataset(); ds != "" && ds != p.Output {
			c.warnf(comp, list[i].ptr, "share_dataset %q is not the pipe's sink dataset %q: inserts are looked up in %q but recorded in %q", ds, p.Output, ds, p.Output)
		}
		p.Sharer = sh
		p.Share = ShareOptions{
			MaxRetries:        DefaultMaxRetriesPerEntity,
			DeadLetterDataset: "system:dead-letter:" + p.ID,
			DeleteLimitCount:  DefaultDeleteLimitCount,
			DeleteLimitFactor: DefaultDeleteLimitFactor,
		}
		pump, _ := comp.Raw["pump"].(map[string]any)
		if n, has := intField(pump, "max_retries_per_entity"); has {
			p.Share.MaxRetries = n
		}
		if s, has := pump["dead_letter_dataset"].(string); has {
			p.Share.DeadLetterDataset = s
		}
		if n, has := intField(pump, "delete_circuit_breaker_count"); has {
			p.Share.DeleteLimitCount = int64(n)
		}
		if f, has := floatField(pump, "delete_circuit_breaker_factor"); has {
			p.Share.DeleteLimitFactor = f
		}
	}
	return true
}

type transformCfg struct {
	cfg map[string]any
	ptr string // JSON pointer within the pipe
}

// transformList flattens the transform forms: an object, a list, or
// {"type": "chained", "transforms": [...]}, also nested (a chained
// transform inside a list, as superoffice's share pipes have).
func transformList(v any, ptr string) []transformCfg {
	switch x := v.(type) {
	case map[string]any:
		return transformItem(x, ptr)
	case []any:
		var out []transformCfg
		for i, t := range x {
			out = append(out, transformItem(t, fmt.Sprintf("%s/%d", ptr, i))...)
		}
		return out
	}
	return nil
}

// transformItem flattens one element; a non-object keeps a nil cfg, which
// is reported as "transform must be a JSON object".
func transformItem(v any, ptr string) []transformCfg {
	m, _ := v.(map[string]any)
	if m == nil || m["type"] != "chained" {
		return []transformCfg{{cfg: m, ptr: ptr}}
	}
	var out []transformCfg
	list, _ := m["transforms"].([]any)
	for i, t := range list {
		out = append(out, transformItem(t, fmt.Sprintf("%s/transforms/%d", ptr, i))...)
	}
	return out
}

// component validates and builds one source, transform or sink.
func (c *compiler) component(comp *Component, kind Kind, ptr string, cfg map[string]any) (any, bool) {
	if cfg == nil {
		c.errorf(comp, ptr, "%s must be a JSON object", kind)
		return nil, false
	}
	name, _ := cfg["type"].(string)
	if name == "" {
		c.errorf(comp, ptr+"/type", "%s has no type", kind)
		return nil, false
	}
	e, ok := c.reg.lookup(kind, name)
	if !ok {
		c.errorf(comp, ptr+"/type", "unknown %s type %q (known: %s)", kind, name, knownList(c.reg, kind, ""))
		return nil, false
	}
	if e.build == nil {
		key := string(kind) + ":" + name
		c.unsupported[key] = append(c.unsupported[key], comp.ID)
		return nil, false
	}
	sch, err := c.reg.schemaFor(kind, name)
	if err != nil {
		c.errorf(comp, ptr, "%v", err)
		return nil, false
	}
	if !c.check(comp, ptr, sch, cfg) {
		return nil, false
	}
	b := c.build(comp, ptr, comp.ID)
	var v any
	switch kind {
	case KindSource:
		v, err = e.build.(SourceFunc)(b, cfg)
	case KindTransform:
		v, err = e.build.(TransformFunc)(b, cfg)
	case KindSink:
		v, err = e.build.(SinkFunc)(b, cfg)
	}
	if err != nil {
		c.ctorErr(comp, ptr, err)
		return nil, false
	}
	return v, true
}

func intField(m map[string]any, key string) (int, bool) {
	switch x := m[key].(type) {
	case interface{ Int64() (int64, error) }:
		n, err := x.Int64()
		return int(n), err == nil
	case int:
		return x, true
	}
	return 0, false
}

func floatField(m map[string]any, key string) (float64, bool) {
	switch x := m[key].(type) {
	case interface{ Float64() (float64, error) }:
		f, err := x.Float64()
		return f, err == nil
	case int:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func (c *compiler) pump(comp *Component) (Pump, bool) {
	p := Pump{Mode: "scheduled", Signalled: true}
	m, _ := comp.Raw["pump"].(map[string]any)
	if m == nil {
		return p, true
	}
	if s, ok := m["mode"].(string); ok {
		p.Mode = s
	}
	if b, ok := m["run_at_startup"].(bool); ok {
		p.RunAtStartup = b
	}
	if f, ok := floatField(m, "schedule_interval"); ok {
		p.Interval = time.Duration(f * float64(time.Second))
		// SPEC c: signalling is off when the pipe sets an interval < 1 h
		// or a cron; the schedule then governs.
		p.Signalled = p.Interval >= time.Hour
	}
	if s, ok := m["cron_expression"].(string); ok {
		if !gronx.New().IsValid(s) {
			c.errorf(comp, "/pump/cron_expression", "invalid cron expression %q", s)
			return p, false
		}
		p.Cron = s
		p.Signalled = false
	}
	if sup, ok := m["supports_signalling"].(bool); ok {
		p.Signalled = sup
	}
	if src, ok := comp.Raw["source"].(map[string]any); ok {
		if sup, ok := src["supports_signalling"].(bool); ok {
			p.Signalled = sup
		}
	}
	return p, true
}

// graph checks dataset wiring: one writer per dataset, no cycle of pipes
// reading each other's datasets through their sources (an error: such
// pipes run until they stop changing anything, which most cycles never do;
// hops do not count, see Order; a pipe of the cycle with "allow_cycle":
// true accepts it), and inputs and
// hopped datasets that nobody writes (warnings: the writer may live in
// another config). A hop into the pipe's own share dataset is not warned
// about, since a config may leave the share pipe out: the pipe's own
// output (share and event pipes look up their sink), a dataset a transform
// declares as [ShareDatasets], or the connector naming "<sys>-<dt>-share"
// for a pipe "<sys>-<dt>-<role>" (association collect pipes hop into
// their share dataset with DTL).
func (c *compiler) graph(plan *Plan) {
	writers := map[string]*Pipe{}
	for _, p := range plan.Pipes {
		if p.Output == "" {
			continue
		}
		if prev, dup := writers[p.Output]; dup {
			c.errorf(p.Comp, "/sink", "pipes %q and %q both write dataset %q; a dataset has one writer", prev.ID, p.ID, p.Output)
			continue
		}
		writers[p.Output] = p
	}
	for _, p := range plan.Pipes {
		for _, in := range p.Inputs {
			if _, ok := writers[in]; !ok {
				c.warnf(p.Comp, "/source", "dataset %q is read but no pipe in this config writes it", in)
			}
		}
		var shares []string
		for _, t := range p.Transforms {
			if sd, ok := t.(ShareDatasets); ok {
				shares = append(shares, sd.ShareDatasets()...)
			}
		}
		for _, h := range p.Hops {
			if _, ok := writers[h]; ok || h == p.Output || slices.Contains(shares, h) || isOwnShareDataset(p.ID, h) {
				continue
			}
			c.warnf(p.Comp, "/transform", "dataset %q is hopped into but no pipe in this config writes it", h)
		}
	}
	_, cycles := plan.Order()
	for _, cyc := range cycles {
		allowed := false
		for _, id := range cyc {
			if b, _ := plan.Pipe(id).Comp.Raw["allow_cycle"].(bool); b {
				allowed = true
			}
		}
		if allowed {
			continue
		}
		var steps []string
		for i, id := range cyc {
			next := plan.Pipe(cyc[(i+1)%len(cyc)])
			steps = append(steps, fmt.Sprintf("%q reads %q (written by %q)", id, next.Output, next.ID))
		}
		first := plan.Pipe(cyc[0])
		c.errorf(first.Comp, "/source", "dataset cycle: %s; pipes whose sources form a cycle never settle, so none of them runs (hop into one of the datasets instead of reading it as a source, or set \"allow_cycle\": true on a pipe of the cycle when it settles by design)",
			strings.Join(steps, ", "))
	}
}

// isOwnShareDataset reports whether ds is named as the share dataset of
// the connector datatype pipe belongs to: pipe "<sys>-<dt>-<role>" and ds
// "<sys>-<dt>-share".
func isOwnShareDataset(pipe, ds string) bool {
	i := strings.LastIndexByte(pipe, '-')
	return i > 0 && ds == pipe[:i]+"-share"
}

// Order returns the pipes in dependency order: the writer of a dataset
// before the pipes whose source reads it, and before the pipes that hop
// into it unless that hop would close a cycle (a collect pipe hops into
// the share dataset that its own output eventually feeds; the hop then
// just sees the share dataset as it is). Pipes in a cycle of source inputs
// keep their config order after the acyclic ones. The second result lists
// those cycles, each as pipe ids.
func (p *Plan) Order() ([]*Pipe, [][]string) {
	writer := map[string]*Pipe{}
	for _, pp := range p.Pipes {
		if pp.Output != "" {
			writer[pp.Output] = pp
		}
	}
	// deps[pp]: pipes that run before pp.
	deps := map[*Pipe][]*Pipe{}
	for _, pp := range p.Pipes {
		for _, in := range pp.Inputs {
			if w, ok := writer[in]; ok && w != pp {
				deps[pp] = append(deps[pp], w)
			}
		}
	}
	// Hop edges, in config order, each only when it closes no cycle.
	for _, pp := range p.Pipes {
		for _, h := range pp.Hops {
			if w, ok := writer[h]; ok && w != pp && !dependsOn(deps, w, pp) {
				deps[pp] = append(deps[pp], w)
			}
		}
	}
	state := map[*Pipe]int{} // 0 new, 1 visiting, 2 done
	var order []*Pipe
	var cycles [][]string
	var stack []*Pipe
	var visit func(pp *Pipe)
	visit = func(pp *Pipe) {
		switch state[pp] {
		case 2:
			return
		case 1:
			var cyc []string
			for i := len(stack) - 1; i >= 0; i-- {
				cyc = append([]string{stack[i].ID}, cyc...)
				if stack[i] == pp {
					break
				}
			}
			cycles = append(cycles, cyc)
			return
		}
		state[pp] = 1
		stack = append(stack, pp)
		for _, w := range deps[pp] {
			visit(w)
		}
		stack = stack[:len(stack)-1]
		state[pp] = 2
		order = append(order, pp)
	}
	for _, pp := range p.Pipes {
		visit(pp)
	}
	return order, cycles
}

// dependsOn reports whether from runs after to through deps (from == to
// counts).
func dependsOn(deps map[*Pipe][]*Pipe, from, to *Pipe) bool {
	seen := map[*Pipe]bool{}
	var walk func(pp *Pipe) bool
	walk = func(pp *Pipe) bool {
		if pp == to {
			return true
		}
		if seen[pp] {
			return false
		}
		seen[pp] = true
		for _, d := range deps[pp] {
			if walk(d) {
				return true
			}
		}
		return false
	}
	return walk(from)
}
