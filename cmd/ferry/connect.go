package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/connectors"
	"github.com/ferrydata/ferry/engine/secrets"
	"github.com/ferrydata/ferry/pipes/all"
)

// kvFlag collects repeated "--flag k=v" values.
type kvFlag struct {
	name string
	m    map[string]string
	// bad counts malformed values; they are reported after parsing, so a
	// mistyped --secret never reaches the flag package's error message.
	bad int
}

// String returns the names given so far (never values: --secret uses it).
func (k *kvFlag) String() string {
	if k == nil {
		return ""
	}
	return strings.Join(sortedKeys(k.m), ",")
}

// Set parses one k=v.
func (k *kvFlag) Set(s string) error {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		k.bad++
		return nil
	}
	if k.m == nil {
		k.m = map[string]string{}
	}
	k.m[name] = val
	return nil
}

// listFlag parses "a,b,c".
func listFlag(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// configArgs splits `ferry run` arguments: the first is the CONFIG when it
// exists on disk; otherwise every argument is a pipe id (of the connector
// instances).
func configArgs(pos []string) (paths, pipes []string) {
	if len(pos) == 0 {
		return nil, nil
	}
	if _, err := os.Stat(pos[0]); err == nil {
		return pos[:1], pos[1:]
	}
	return nil, pos
}

// addConnectors adds the expanded components of every connector instance
// recorded in the store to cfg and resolves $SECRET in system configs,
// then redacts every secret value from the command's output. It reads the
// store through a short read-only handle (run and serve open it for
// writing afterwards). needInstances: there is no CONFIG, so no instances
// is a usage error.
func (c *cli) addConnectors(ctx context.Context, f *flags, cfg *engine.Config, env engine.Env, needInstances bool) error {
	var store engine.Store
	if storeExists(f) {
		s, err := c.storeOpen(f, true)
		if err != nil {
			return err
		}
		defer s.Close()
		store = s
	}
	var exps []*connectors.Expansion
	if store != nil {
		var err error
		if exps, err = connectors.LoadInstances(ctx, store, env); err != nil {
			return err
		}
	}
	if needInstances && len(exps) == 0 {
		return fmt.Errorf("give a config file or directory, or connect a connector first (ferry connect DIR --system ID); no connector instances in %s", *f.data)
	}
	for _, e := range exps {
		e.AddTo(cfg)
	}
	lookup := func(ctx context.Context, system, name string) (string, bool, error) { return "", false, nil }
	if store != nil {
		lookup = secrets.Open(store, *f.data, c.getenv).Get
	}
	c.redact(secrets.Resolve(ctx, cfg, lookup))
	return cfg.Check()
}

// redact routes the command's output through red.
func (c *cli) redact(red *secrets.Redactor) {
	c.stdout = red.Writer(c.stdout)
	c.stderr = red.Writer(c.stderr)
}

const unsupportedPrefix = "not supported yet: "

func (c *cli) cmdConnect(ctx context.Context, args []string) int {
	f := c.newFlags("connect").withEnv()
	system := f.fs.String("system", "", "system id of the instance (required); every pipe and dataset id starts with it")
	params := &kvFlag{name: "--param"}
	f.fs.Var(params, "param", "NAME=VALUE: an additional parameter ($ENV(NAME) for this instance, injected variables); repeatable")
	secretVals := &kvFlag{name: "--secret"}
	f.fs.Var(secretVals, "secret", "NAME=VALUE: a secret of this instance's system ($SECRET(NAME)); repeatable")
	datatypes := f.fs.String("datatypes", "", "comma-separated datatypes to enable (default: all)")
	share := f.fs.String("share", "", "comma-separated datatypes whose share (write-back) pipes run (default: none)")
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 || *system == "" {
		c.errorf("connect: give one connector directory and --system ID")
		return exitUsage
	}
	for _, k := range []*kvFlag{params, secretVals} {
		if k.bad > 0 {
			c.errorf("connect: %s takes NAME=VALUE (%d malformed)", k.name, k.bad)
			return exitUsage
		}
	}
	dir, err := filepath.Abs(pos[0])
	if err != nil {
		c.errorf("connect: %v", err)
		return exitUsage
	}
	env, ok := c.baseEnv(f)
	if !ok {
		return exitUsage
	}
	inst := &connectors.Instance{
		ID: *system, Connector: connectors.Name(dir), Dir: dir, Params: params.m,
		Datatypes: listFlag(*datatypes), Share: listFlag(*share), Connected: time.Now().UTC().Truncate(time.Second),
	}
	red := &secrets.Redactor{}
	for _, v := range secretVals.m {
		red.Add(v)
	}
	c.redact(red)
	for name := range secretVals.m {
		if !secrets.ValidName(name) {
			c.errorf("connect: invalid secret name %q", name)
			return exitUsage
		}
	}
	if err := inst.Check(); err != nil {
		c.errorf("connect: %v", err)
		return exitUsage
	}
	exp, err := inst.Expansion(env)
	if err != nil {
		c.errorf("connect: %v", err)
		return exitUsage
	}
	store, ok := c.openStore(f, false)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	if prev, found, err := connectors.Get(ctx, store, inst.ID); err != nil {
		c.errorf("connect: %v", err)
		return exitFailed
	} else if found && prev.Dir != inst.Dir {
		c.errorf("connect: %s is already connected to %s; disconnect it first or choose another --system", inst.ID, prev.Dir)
		return exitUsage
	}
	sec := secrets.Open(store, *f.data, c.getenv)

	// Validate: the expansion must load and compile; unsupported types
	// are warnings here (they fail at run until implemented).
	cfg := &engine.Config{}
	exp.AddTo(cfg)
	c.redact(secrets.Resolve(ctx, cfg, func(ctx context.Context, sys, name string) (string, bool, error) {
		if v, ok := secretVals.m[name]; ok && sys == inst.ID {
			return v, true, nil
		}
		return sec.Get(ctx, sys, name)
	}))
	if err := cfg.Check(); err == nil {
		// Compile's error repeats its diagnostics, which are read below.
		if plan, _ := engine.Compile(cfg, all.Registry(), c.logger()); plan != nil {
			cfg.Diagnostics = plan.Diagnostics
		}
	}
	var unsupported, warnings, errs []string
	for _, d := range cfg.Diagnostics {
		switch {
		case d.Severity == engine.SevError && strings.HasPrefix(d.Message, unsupportedPrefix):
			d.Severity = engine.SevWarning
			unsupported = append(unsupported, d.String())
		case d.Severity == engine.SevError:
			errs = append(errs, d.String())
		default:
			warnings = append(warnings, d.String())
		}
	}
	for _, w := range warnings {
		fmt.Fprintln(c.stderr, w)
	}
	for _, u := range unsupported {
		fmt.Fprintln(c.stderr, u)
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(c.stderr, e)
		}
		c.errorf("connect: %s from %s does not validate (%d errors); nothing recorded", inst.ID, dir, len(errs))
		return exitUsage
	}

	for _, name := range sortedKeys(secretVals.m) {
		if err := sec.Set(ctx, inst.ID, name, secretVals.m[name]); err != nil {
			c.errorf("connect: %v", err)
			return exitFailed
		}
	}
	if err := connectors.Put(ctx, store, inst); err != nil {
		c.errorf("connect: %v", err)
		return exitFailed
	}
	pipes, systems := 0, 0
	for _, comp := range exp.Components {
		if m, _ := comp.(map[string]any); m != nil {
			if t, _ := m["type"].(string); t == "pipe" {
				pipes++
			} else if strings.HasPrefix(t, "system:") {
				systems++
			}
		}
	}
	fmt.Fprintf(c.stdout, "connected %s: %s (%d pipes, %d systems), datatypes %s, share %s\n",
		inst.ID, dir, pipes, systems, orAll(inst.Datatypes, "all"), orAll(inst.Share, "none"))
	if len(unsupported) > 0 {
		fmt.Fprintf(c.stdout, "%d unsupported component types or features (see the warnings): 'ferry run' fails until they are implemented\n", len(unsupported))
	}
	return exitOK
}

func orAll(list []string, empty string) string {
	if len(list) == 0 {
		return empty
	}
	return strings.Join(list, ",")
}

// baseEnv is the --env file, then the process environment.
func (c *cli) baseEnv(f *flags) (engine.Env, bool) {
	fileEnv := map[string]string{}
	if f.env != nil && *f.env != "" {
		m, err := engine.LoadEnvFile(*f.env)
		if err != nil {
			c.errorf("%v", err)
			return nil, false
		}
		fileEnv = m
	}
	return func(name string) (string, bool) {
		if v, ok := fileEnv[name]; ok {
			return v, true
		}
		return c.getenv(name)
	}, true
}

func (c *cli) cmdConnectors(ctx context.Context, args []string) int {
	f := c.newFlags("connectors")
	if _, err := f.parse(args); err != nil {
		return exitUsage
	}
	var list []*connectors.Instance
	if storeExists(f) {
		store, ok := c.openStore(f, true)
		if !ok {
			return exitUsage
		}
		defer store.Close()
		var err error
		if list, err = connectors.List(ctx, store); err != nil {
			c.errorf("connectors: %v", err)
			return exitFailed
		}
	}
	if *f.json {
		if list == nil {
			list = []*connectors.Instance{}
		}
		c.printJSON(list)
		return exitOK
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "no connector instances (ferry connect DIR --system ID)")
		return exitOK
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONNECTOR\tDATATYPES\tSHARE\tPARAMS\tCONNECTED\tDIR")
	for _, in := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Connector, orAll(in.Datatypes, "all"), orAll(in.Share, "none"),
			orAll(sortedKeys(in.Params), "-"), in.Connected.Format(time.RFC3339), in.Dir)
	}
	tw.Flush()
	return exitOK
}

func (c *cli) cmdDisconnect(ctx context.Context, args []string) int {
	f := c.newFlags("disconnect")
	purge := f.fs.Bool("purge", false, `also delete the instance's datasets (names starting with "ID-")`)
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		c.errorf("disconnect: give one instance id (see ferry connectors)")
		return exitUsage
	}
	id := pos[0]
	if !storeExists(f) {
		c.errorf("disconnect: no connector instance %q (no store in %s)", id, *f.data)
		return exitUsage
	}
	store, ok := c.openStore(f, false)
	if !ok {
		return exitUsage
	}
	defer store.Close()
	list, err := connectors.List(ctx, store)
	if err != nil {
		c.errorf("disconnect: %v", err)
		return exitFailed
	}
	var others []string
	for _, in := range list {
		others = append(others, in.ID)
	}
	removed, err := connectors.Remove(ctx, store, id)
	if err != nil {
		c.errorf("disconnect: %v", err)
		return exitFailed
	}
	if !removed {
		c.errorf("disconnect: no connector instance %q (see ferry connectors)", id)
		return exitUsage
	}
	nsec, err := secrets.Open(store, *f.data, c.getenv).DeleteSystem(ctx, id)
	if err != nil {
		c.errorf("disconnect: %v", err)
		return exitFailed
	}
	fmt.Fprintf(c.stdout, "disconnected %s (%d secrets removed)\n", id, nsec)
	if !*purge {
		return exitOK
	}
	_, match := connectors.PurgePrefix(id, others)
	infos, err := store.Datasets(ctx)
	if err != nil {
		c.errorf("disconnect: %v", err)
		return exitFailed
	}
	var deleted []string
	for _, info := range infos {
		if !match(info.Name) {
			continue
		}
		if err := store.DeleteDataset(ctx, info.Name); err != nil {
			c.errorf("disconnect: %v", err)
			return exitFailed
		}
		deleted = append(deleted, info.Name)
	}
	sort.Strings(deleted)
	fmt.Fprintf(c.stdout, "purged %d datasets", len(deleted))
	if len(deleted) > 0 {
		fmt.Fprintf(c.stdout, ": %s", strings.Join(deleted, ", "))
	}
	fmt.Fprintln(c.stdout)
	return exitOK
}
