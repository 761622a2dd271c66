package connectors

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/manifest"
)

// Namespace is the store key-value namespace holding instances.
const Namespace = "connectors"

// KV is the part of engine.Store instances are kept in.
type KV interface {
	GetKV(ctx context.Context, ns, key string) ([]byte, bool, error)
	PutKV(ctx context.Context, ns, key string, value []byte) error
	DeleteKV(ctx context.Context, ns, key string) error
	ListKV(ctx context.Context, ns string) ([]string, error)
}

// Instance is one connected connector.
type Instance struct {
	// ID is the system id; every expanded component id starts with it.
	ID string `json:"id"`
	// Connector is the connector's name (see Name).
	Connector string `json:"connector"`
	// Dir is the connector directory, absolute.
	Dir string `json:"dir"`
	// Params are the instance's additional parameters: $ENV(name) values
	// and injected variables.
	Params map[string]string `json:"params,omitempty"`
	// Datatypes enabled; empty means all of the manifest's.
	Datatypes []string `json:"datatypes,omitempty"`
	// Share lists the datatypes whose share (write-back) pipes run (their
	// direction is "both" unless Directions says otherwise).
	Share []string `json:"share,omitempty"`
	// Directions maps datatypes to their direction: DirectionPull,
	// DirectionPush or DirectionBoth (see Direction).
	Directions map[string]string `json:"directions,omitempty"`
	// Connected is when the instance was recorded (the connected_ts
	// variable).
	Connected time.Time `json:"connected"`
	// History says what the first collect of a datatype fetches: "all"
	// (everything; "" means the same), "since-connected" (only what
	// changed since Connected) or a date or time (YYYY-MM-DD or RFC 3339:
	// only what changed since then). See HistorySince.
	History string `json:"history,omitempty"`
}

// History settings of an instance.
const (
	// HistoryAll fetches every record on the first collect (the default).
	HistoryAll = "all"
	// HistorySinceConnected fetches only what changed since the instance
	// was connected.
	HistorySinceConnected = "since-connected"
)

// HistorySince returns the point from which the instance's first collects
// fetch records: ok false for all history. History is "all" or "",
// "since-connected" (Connected) or a date (midnight UTC) or an RFC 3339
// time. The legacy is_fullsync parameter, "false", means since-connected
// when History is not set.
func (in *Instance) HistorySince() (since time.Time, ok bool, err error) {
	h := in.History
	if h == "" {
		if v, set := in.Params["is_fullsync"]; set {
			if b, perr := strconv.ParseBool(v); perr == nil && !b {
				h = HistorySinceConnected
			}
		}
	}
	switch h {
	case "", HistoryAll:
		return time.Time{}, false, nil
	case HistorySinceConnected:
		return in.Connected.UTC(), true, nil
	}
	if t, perr := time.Parse(time.DateOnly, h); perr == nil {
		return t, true, nil
	}
	if t, perr := time.Parse(time.RFC3339, h); perr == nil {
		return t.UTC(), true, nil
	}
	return time.Time{}, false, fmt.Errorf("connector instance %q: history %q: want all, since-connected, a date (2024-05-31) or an RFC 3339 time (2024-05-31T12:00:00Z)", in.ID, h)
}

// Name returns a connector's name from its directory: the base name
// without a "-connector" suffix ("hubspot-connector" -> "hubspot"). It
// names the injected "<name>_webhook_dataset" variable.
func Name(dir string) string {
	return strings.TrimSuffix(filepath.Base(filepath.Clean(dir)), "-connector")
}

// Injected lists the variables the hosted deployer injects that an
// instance takes from its parameters when given: account_id, base_url,
// token_url, service_url and "<connector>_webhook_dataset". connected_ts
// and is_fullsync are always injected (see Instance.Options).
func Injected(connector string) []string {
	return []string{"account_id", "base_url", "token_url", "service_url", connector + "_webhook_dataset"}
}

// Options returns the expansion options of the instance: Deploy mode, its
// datatypes, and as Vars the injected variables given as parameters,
// connected_ts (the connect time, RFC 3339 UTC) and the historical-data
// setting (see HistorySince): is_fullsync (true when the first collect
// fetches all history), history ("all", "since-connected" or the date as
// given), history_since (the point the first collect starts from, RFC
// 3339 UTC, "" for all history) and history_since_unix (the same in Unix
// seconds, "" for all history). A collect template honours the setting
// by starting its since-capable source there:
// "initial_since_value": "<<@ history_since @>>". An invalid History
// counts as all history here; Check reports it.
func (in *Instance) Options() manifest.Options {
	vars := map[string]any{
		"connected_ts":       in.Connected.UTC().Format(time.RFC3339),
		"is_fullsync":        true,
		"history":            HistoryAll,
		"history_since":      "",
		"history_since_unix": "",
	}
	if since, ok, err := in.HistorySince(); err == nil && ok {
		vars["is_fullsync"] = false
		vars["history"] = in.History
		if in.History == "" {
			vars["history"] = HistorySinceConnected
		}
		vars["history_since"] = since.Format(time.RFC3339)
		vars["history_since_unix"] = since.Unix()
	}
	for _, name := range Injected(in.Connector) {
		if v, ok := in.Params[name]; ok {
			vars[name] = v
		}
	}
	return manifest.Options{System: in.ID, Vars: vars, Deploy: true, Datatypes: in.Datatypes}
}

// Directions of a datatype.
const (
	// DirectionPull collects from the system; nothing is written back
	// (the share pipe is left out).
	DirectionPull = "pull"
	// DirectionPush writes back and does not collect: the share pipe runs,
	// the datatype's input (collect) pipes get pump mode "manual" (run on
	// request only, e.g. to refresh $based_on before a write).
	DirectionPush = "push"
	// DirectionBoth collects and writes back.
	DirectionBoth = "both"
)

// Direction returns a datatype's direction: Directions, else "both" for a
// datatype listed in Share or marked "bidirectional" in the manifest (m may
// be nil), else "pull".
func (in *Instance) Direction(m *manifest.Manifest, datatype string) string {
	if d, ok := in.Directions[datatype]; ok {
		return d
	}
	if slices.Contains(in.Share, datatype) {
		return DirectionBoth
	}
	if m != nil {
		for _, d := range m.Datatypes {
			if d.Name == datatype && d.Bidirectional {
				return DirectionBoth
			}
		}
	}
	return DirectionPull
}

// IsSharePipe reports whether a component is the share (write-back) pipe
// of its datatype: a pipe whose _id is "<system>-<datatype>-share".
func IsSharePipe(system string, c *manifest.Component) bool {
	return c.Kind == "pipe" && c.Datatype != "" && c.ID == system+"-"+c.Datatype+"-share"
}

// Check validates the instance's fields (not its connector): a usable
// system id, an absolute directory, share datatypes among the enabled
// ones, a valid History.
func (in *Instance) Check() error {
	switch {
	case in.ID == "":
		return fmt.Errorf("connector instance: empty system id")
	case strings.ContainsAny(in.ID, "/ \t\n"):
		return fmt.Errorf("connector instance %q: a system id must not contain '/' or spaces", in.ID)
	case !filepath.IsAbs(in.Dir):
		return fmt.Errorf("connector instance %q: directory %q is not absolute", in.ID, in.Dir)
	}
	if len(in.Datatypes) > 0 {
		for _, s := range in.Share {
			if !slices.Contains(in.Datatypes, s) {
				return fmt.Errorf("connector instance %q: --share %s: datatype %q is not among the enabled datatypes %v", in.ID, s, s, in.Datatypes)
			}
		}
		for _, dt := range slices.Sorted(maps.Keys(in.Directions)) {
			if !slices.Contains(in.Datatypes, dt) {
				return fmt.Errorf("connector instance %q: --direction %s=%s: datatype %q is not among the enabled datatypes %v", in.ID, dt, in.Directions[dt], dt, in.Datatypes)
			}
		}
	}
	if _, _, err := in.HistorySince(); err != nil {
		return err
	}
	for _, dt := range slices.Sorted(maps.Keys(in.Directions)) {
		switch d := in.Directions[dt]; d {
		case DirectionPull, DirectionPush, DirectionBoth:
		default:
			return fmt.Errorf("connector instance %q: --direction %s=%s: %q is not pull, push or both", in.ID, dt, d, d)
		}
	}
	return nil
}

// Expand loads the instance's manifest and expands it (Options), leaving
// out the share pipes of "pull" datatypes (see Direction). Errors name
// the instance and the manifest file.
func (in *Instance) Expand() (*manifest.Manifest, []manifest.Component, error) {
	m, err := manifest.Load(in.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("connector instance %q: %w", in.ID, err)
	}
	for _, s := range in.Share {
		if !hasDatatype(m, s) {
			return nil, nil, fmt.Errorf("connector instance %q: --share %s: %s: %w", in.ID, s, m.Path, manifest.ErrNoSuchDatatype)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(in.Directions)) {
		if !hasDatatype(m, s) {
			return nil, nil, fmt.Errorf("connector instance %q: --direction %s: %s: %w", in.ID, s, m.Path, manifest.ErrNoSuchDatatype)
		}
	}
	comps, err := m.Expand(in.Options())
	if err != nil {
		return nil, nil, fmt.Errorf("connector instance %q: %w", in.ID, err)
	}
	kept := comps[:0]
	for i := range comps {
		c := &comps[i]
		dir := in.Direction(m, c.Datatype)
		if IsSharePipe(in.ID, c) && dir == DirectionPull {
			continue
		}
		kept = append(kept, *c)
	}
	return m, kept, nil
}

// HonoursHistory reports whether the connector's expansion depends on the
// instance's historical-data setting: false when its templates use none
// of the history variables (its first collects then fetch everything
// whatever History says). It expands the connector twice.
func (in *Instance) HonoursHistory() (bool, error) {
	_, limited, err := in.Expand()
	if err != nil {
		return false, err
	}
	all := *in
	all.History = HistoryAll
	_, full, err := all.Expand()
	if err != nil {
		return false, err
	}
	if len(limited) != len(full) {
		return true, nil
	}
	for i := range limited {
		if string(limited[i].JSON) != string(full[i].JSON) {
			return true, nil
		}
	}
	return false, nil
}

// manualInput sets pump mode "manual" on an input pipe (one whose source
// is not a dataset source) of a push datatype.
func manualInput(p map[string]any) {
	src, _ := p["source"].(map[string]any)
	switch src["type"] {
	case nil, "dataset", "merge_datasets", "union_datasets", "merge":
		return
	}
	pump, _ := p["pump"].(map[string]any)
	if pump == nil {
		pump = map[string]any{}
		p["pump"] = pump
	}
	pump["mode"] = "manual"
}

func hasDatatype(m *manifest.Manifest, name string) bool {
	for _, d := range m.Datatypes {
		if d.Name == name {
			return true
		}
	}
	return false
}

// Env returns the instance's $ENV lookup: its parameters first, then base
// (nil: nothing else).
func (in *Instance) Env(base engine.Env) engine.Env {
	return func(name string) (string, bool) {
		if v, ok := in.Params[name]; ok {
			return v, true
		}
		if base == nil {
			return "", false
		}
		return base(name)
	}
}

// Expansion is an instance's expanded components, ready for a Config.
type Expansion struct {
	Instance   Instance
	Components []any // decoded components (map[string]any, json.Number)
	Env        engine.Env
	// Shims are the _ids of the datatypes' "-transform" shim pipes.
	Shims map[string]bool
}

// AddTo adds the components to cfg, resolving $ENV with Env, each under
// the pseudo file name FileName(instance, component _id). A shim pipe
// ("<system>-<datatype>-transform", which sesam-py adds to carry the
// collected entities on unchanged) is left out when cfg already has a pipe
// with its _id: the config's own mapping from the global datasets to the
// system's desired state replaces it. Call cfg.Check afterwards for the
// duplicate-id check.
func (e *Expansion) AddTo(cfg *engine.Config) {
	for _, c := range e.Components {
		id, _ := c.(map[string]any)["_id"].(string)
		if e.Shims[id] && cfg.Pipe(id) != nil {
			continue
		}
		cfg.AddComponents(FileName(e.Instance.ID, id), []any{c}, e.Env)
	}
}

// FileName is the pseudo file name diagnostics give a component of an
// instance: "connector:<instance>[<component _id>]"; pointers start with
// "/0" (the component itself).
func FileName(instance, component string) string {
	return "connector:" + instance + "[" + component + "]"
}

// Expansion expands the instance and decodes its components.
func (in *Instance) Expansion(base engine.Env) (*Expansion, error) {
	m, comps, err := in.Expand()
	if err != nil {
		return nil, err
	}
	out := &Expansion{Instance: *in, Env: in.Env(base), Shims: map[string]bool{}}
	for i := range comps {
		c := &comps[i]
		v, err := c.Decode()
		if err != nil {
			return nil, fmt.Errorf("connector instance %q: component %q from %s: %w", in.ID, c.ID, c.Template, err)
		}
		switch {
		case c.Template == "shim.json":
			out.Shims[c.ID] = true
		case c.Kind == "pipe" && c.Datatype != "" && !IsSharePipe(in.ID, c) && in.Direction(m, c.Datatype) == DirectionPush:
			manualInput(v)
		}
		out.Components = append(out.Components, v)
	}
	return out, nil
}

// Put records (or replaces) an instance.
func Put(ctx context.Context, kv KV, in *Instance) error {
	if err := in.Check(); err != nil {
		return err
	}
	data, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("connector instance %q: %w", in.ID, err)
	}
	if err := kv.PutKV(ctx, Namespace, in.ID, data); err != nil {
		return fmt.Errorf("recording connector instance %q: %w", in.ID, err)
	}
	return nil
}

// Get returns the instance recorded under id.
func Get(ctx context.Context, kv KV, id string) (*Instance, bool, error) {
	data, ok, err := kv.GetKV(ctx, Namespace, id)
	if err != nil {
		return nil, false, fmt.Errorf("reading connector instance %q: %w", id, err)
	}
	if !ok {
		return nil, false, nil
	}
	var in Instance
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, false, fmt.Errorf("connector instance %q: damaged record: %w", id, err)
	}
	return &in, true, nil
}

// List returns every instance, sorted by id.
func List(ctx context.Context, kv KV) ([]*Instance, error) {
	keys, err := kv.ListKV(ctx, Namespace)
	if err != nil {
		return nil, fmt.Errorf("listing connector instances: %w", err)
	}
	out := make([]*Instance, 0, len(keys))
	for _, k := range keys {
		in, ok, err := Get(ctx, kv, k)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, in)
		}
	}
	return out, nil
}

// Remove deletes the instance record and reports whether it existed. It
// does not touch datasets or secrets.
func Remove(ctx context.Context, kv KV, id string) (bool, error) {
	_, ok, err := kv.GetKV(ctx, Namespace, id)
	if err != nil || !ok {
		return false, err
	}
	if err := kv.DeleteKV(ctx, Namespace, id); err != nil {
		return false, fmt.Errorf("removing connector instance %q: %w", id, err)
	}
	return true, nil
}

// LoadInstances expands every recorded instance (see the package doc).
// env is the base $ENV lookup (the --env file, then the process
// environment); each instance's parameters come first. An instance whose
// connector no longer expands is an error naming it.
func LoadInstances(ctx context.Context, kv KV, env engine.Env) ([]*Expansion, error) {
	list, err := List(ctx, kv)
	if err != nil {
		return nil, err
	}
	var out []*Expansion
	for _, in := range list {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := in.Expansion(env)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// PurgePrefix returns the dataset-name prefix `disconnect --purge` deletes
// for instance id ("<id>-"), and a filter that keeps datasets of other
// instances whose id itself starts with that prefix (purging "acme" must
// not delete "acme-eu-person" while "acme-eu" is connected).
func PurgePrefix(id string, others []string) (string, func(dataset string) bool) {
	prefix := id + "-"
	return prefix, func(name string) bool {
		if !strings.HasPrefix(name, prefix) {
			return false
		}
		for _, o := range others {
			if o != id && strings.HasPrefix(o, prefix) && strings.HasPrefix(name, o+"-") {
				return false
			}
		}
		return true
	}
}
