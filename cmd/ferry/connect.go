package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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

// Type names the value in help output.
func (k *kvFlag) Type() string { return "NAME=VALUE" }

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
// instances). A first argument that looks like a path (it has a path
// separator or ends in .json) but does not exist is a usage error.
func configArgs(pos []string) (paths, pipes []string, err error) {
	if len(pos) == 0 {
		return nil, nil, nil
	}
	if _, err := os.Stat(pos[0]); err == nil {
		return pos[:1], pos[1:], nil
	}
	if looksLikePath(pos[0]) {
		return nil, nil, usagef("config %s: no such file or directory", pos[0])
	}
	return nil, pos, nil
}

// looksLikePath reports whether arg is meant as a file or directory rather
// than a pipe id (pipe ids have no '/').
func looksLikePath(arg string) bool {
	return strings.ContainsRune(arg, '/') || strings.ContainsRune(arg, filepath.Separator) ||
		strings.HasSuffix(arg, ".json") || arg == "." || arg == ".."
}

// errNoInstances: no CONFIG was given and the store has no connector
// instances.
var errNoInstances = errors.New("nothing to run")

// addConnectors adds the expanded components of every connector instance
// recorded in the store to cfg and resolves $SECRET in system configs,
// then redacts every secret value from the command's output. It reads the
// store through a short read-only handle (run and serve open it for
// writing afterwards). needInstances: there is no CONFIG, so no instances
// is a usage error.
func (c *cli) addConnectors(ctx context.Context, cfg *engine.Config, env engine.Env, needInstances bool) error {
	var store engine.Store
	if c.storeExists() {
		s, err := c.openStore(true, false)
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
		return fmt.Errorf("%w: give a config file or directory, or connect a connector first (ferry connect DIR --system ID); no connector instances in %s", errNoInstances, c.g.data)
	}
	for _, e := range exps {
		e.AddTo(cfg)
	}
	lookup := func(ctx context.Context, system, name string) (string, bool, error) { return "", false, nil }
	if store != nil {
		lookup = secrets.Open(store, c.g.data, c.getenv).Get
	}
	c.redact(secrets.Resolve(ctx, cfg, lookup))
	if c.missingSecretsWarn {
		// validate checks the config, not the deployment: a secret that is
		// not set yet is reported, but does not make the config invalid.
		for i, d := range cfg.Diagnostics {
			if d.Severity == engine.SevError && strings.Contains(d.Message, "unknown secret") {
				cfg.Diagnostics[i].Severity = engine.SevWarning
				cfg.Diagnostics[i].Message += "; run and serve need it"
			}
		}
	}
	return cfg.Check()
}

// redact routes the command's output through red.
func (c *cli) redact(red *secrets.Redactor) {
	c.stdout = red.Writer(c.stdout)
	c.stderr = red.Writer(c.stderr)
}

const unsupportedPrefix = "not supported yet: "

func (c *cli) connectCmd() *cobra.Command {
	var (
		envFile, system, datatypes, share string
		history                           string
		params                            = &kvFlag{name: "--param"}
		secretVals                        = &kvFlag{name: "--secret"}
		directions                        = &kvFlag{name: "--direction"}
	)
	cmd := &cobra.Command{
		Use:     "connect CONNECTOR_DIR --system ID",
		GroupID: groupConnectors,
		Short:   "Record a connector instance; run and serve then load its pipes",
		Long: `Connect expands a Sesam connector (manifest.json + templates) in deploy mode as
system ID, validates the expansion, and records the instance in the store:
connector directory, parameters, enabled datatypes and each datatype's
direction: pull (collect only; the default), both (collect and write back:
--share, or "bidirectional": true in the manifest) or push (write back; the
input pipes run only on request). 'ferry run' and 'ferry serve' then load its
systems and pipes with the plain config. Unsupported component types are
warnings here (the run fails until they are implemented); other errors
record nothing (exit 2).

--history decides what a datatype's first collect fetches: all (every
record; the default), since-connected (only what changed since the connect
time) or a date (only what changed since then). The connector's collect
templates honour it through their since value (history_since); a connector
that does not is refused with a since-limited --history. A since-limited
first run is not deletion-tracked (see docs/connectors.md).`,
		Example: `  ferry connect cmd/ferry/testdata/powerofficego-connector --system pog --datatypes customer,product \
    --param base_url=http://127.0.0.1:8089/api --param application_key=ferry-client
  ferry connect ../shared/connectors/zendesk-connector --system acme --param subdomain=acme --share ticket
  ferry connect examples/connectors/erp --system erp --direction customer=both
  ferry connect examples/connectors/crm --system crm --history since-connected`,
		Args: usageArgs(1, 1, "give one connector directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.connectHistory(cmd.Context(), args[0], envFile, system, datatypes, share, params, secretVals, directions, history)
		},
	}
	f := cmd.Flags()
	f.StringVar(&envFile, "env", "", "JSON file of $ENV(...) values (the process environment is used too)")
	f.StringVar(&system, "system", "", "system id of the instance (required); every pipe and dataset id starts with it")
	f.Var(params, "param", "an additional parameter ($ENV(NAME) for this instance, injected variables); repeatable")
	f.Var(secretVals, "secret", "a secret of this instance's system ($SECRET(NAME)); repeatable (the value stays in shell history: prefer 'ferry secret set')")
	f.StringVar(&datatypes, "datatypes", "", "comma-separated datatypes to enable (default: all)")
	f.StringVar(&share, "share", "", "comma-separated datatypes whose share (write-back) pipes run: direction both (default: none)")
	f.StringVar(&history, "history", "", "what the first collect fetches: all (default), since-connected, or a date (2024-05-31) or RFC 3339 time")
	f.Var(directions, "direction", "DATATYPE=pull|push|both: a datatype's direction (default pull, or both when the manifest marks it bidirectional); repeatable")
	cmd.MarkFlagRequired("system")
	cmd.MarkFlagFilename("env", "json")
	return jsonOK(cmd)
}

// connectResult is what `ferry connect --json` prints.
type connectResult struct {
	ID          string   `json:"id"`
	Dir         string   `json:"dir"`
	Pipes       int      `json:"pipes"`
	Systems     int      `json:"systems"`
	Datatypes   []string `json:"datatypes"`
	Share       []string `json:"share"`
	Unsupported []string `json:"unsupported"`
}

func (c *cli) connect(ctx context.Context, dirArg, envFile, system, datatypes, share string, params, secretVals, directions *kvFlag) error {
	return c.connectHistory(ctx, dirArg, envFile, system, datatypes, share, params, secretVals, directions, "")
}

// connectHistory is connect with a historical-data setting (--history;
// "" is all history).
func (c *cli) connectHistory(ctx context.Context, dirArg, envFile, system, datatypes, share string, params, secretVals, directions *kvFlag, history string) error {
	for _, k := range []*kvFlag{params, secretVals, directions} {
		if k.bad > 0 {
			return usagef("connect: %s takes NAME=VALUE (%d malformed)", k.name, k.bad)
		}
	}
	dir, err := filepath.Abs(dirArg)
	if err != nil {
		return usagef("connect: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("connect: connector directory %s: no such directory", dirArg)
	}
	env, err := c.baseEnv(envFile)
	if err != nil {
		return err
	}
	inst := &connectors.Instance{
		ID: system, Connector: connectors.Name(dir), Dir: dir, Params: params.m,
		Datatypes: listFlag(datatypes), Share: listFlag(share), Directions: directions.m, Connected: time.Now().UTC().Truncate(time.Second),
		History: history,
	}
	red := &secrets.Redactor{}
	for _, v := range secretVals.m {
		red.Add(v)
	}
	c.redact(red)
	for name := range secretVals.m {
		if !secrets.ValidName(name) {
			return usagef("connect: invalid secret name %q", name)
		}
	}
	if err := inst.Check(); err != nil {
		return usagef("connect: %v", err)
	}
	exp, err := inst.Expansion(env)
	if err != nil {
		return usagef("connect: %v", err)
	}
	if _, limited, _ := inst.HistorySince(); limited {
		if ok, err := inst.HonoursHistory(); err != nil {
			return usagef("connect: %v", err)
		} else if !ok {
			return usagef("connect: --history %s: connector %s does not take a historical-data setting (no template uses history_since or is_fullsync), so its first collect would fetch everything; connect without --history, or set \"initial_since_value\": \"<<@ history_since @>>\" on its collect sources", history, inst.Connector)
		}
	}
	store, err := c.openStore(false, false)
	if err != nil {
		return err
	}
	defer store.Close()
	if prev, found, err := connectors.Get(ctx, store, inst.ID); err != nil {
		return failf("connect: %v", err)
	} else if found && prev.Dir != inst.Dir {
		return usagef("connect: %s is already connected to %s; disconnect it first or choose another --system", inst.ID, prev.Dir)
	}
	sec := secrets.Open(store, c.g.data, c.getenv)

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
		return usagef("connect: %s from %s does not validate (%s); nothing recorded", inst.ID, dir, plural(len(errs), "error"))
	}

	for _, name := range sortedKeys(secretVals.m) {
		if err := sec.Set(ctx, inst.ID, name, secretVals.m[name]); err != nil {
			return failf("connect: %v", err)
		}
	}
	if err := connectors.Put(ctx, store, inst); err != nil {
		return failf("connect: %v", err)
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
	if c.g.json {
		res := connectResult{ID: inst.ID, Dir: dir, Pipes: pipes, Systems: systems, Datatypes: inst.Datatypes, Share: inst.Share, Unsupported: unsupported}
		if res.Datatypes == nil {
			res.Datatypes = []string{}
		}
		if res.Share == nil {
			res.Share = []string{}
		}
		if res.Unsupported == nil {
			res.Unsupported = []string{}
		}
		c.printJSON(res)
		return nil
	}
	fmt.Fprintf(c.stdout, "connected %s: %s (%s, %s), datatypes %s, share %s%s%s\n",
		inst.ID, dir, plural(pipes, "pipe"), plural(systems, "system"), orAll(inst.Datatypes, "all"), orAll(inst.Share, "none"), directionsText(inst.Directions), historyText(inst))
	if len(unsupported) > 0 {
		fmt.Fprintf(c.stdout, "%d unsupported component types or features (see the warnings): 'ferry run' fails until they are implemented\n", len(unsupported))
	}
	return nil
}

func orAll(list []string, empty string) string {
	if len(list) == 0 {
		return empty
	}
	return strings.Join(list, ",")
}

func (c *cli) connectorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "connectors",
		GroupID: groupConnectors,
		Short:   "List connector instances",
		Example: `  ferry connectors
  ferry connectors --json`,
		Args: usageArgs(0, 0, "takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var list []*connectors.Instance
			if c.storeExists() {
				store, err := c.openStore(true, false)
				if err != nil {
					return err
				}
				defer store.Close()
				if list, err = connectors.List(ctx, store); err != nil {
					return failf("connectors: %v", err)
				}
			}
			if c.g.json {
				if list == nil {
					list = []*connectors.Instance{}
				}
				c.printJSON(list)
				return nil
			}
			if len(list) == 0 {
				fmt.Fprintln(c.stdout, "no connector instances (ferry connect DIR --system ID)")
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCONNECTOR\tDATATYPES\tSHARE\tPARAMS\tCONNECTED\tDIR")
			for _, in := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.ID, in.Connector, orAll(in.Datatypes, "all"), orAll(in.Share, "none"),
					orAll(sortedKeys(in.Params), "-"), in.Connected.Format(time.RFC3339), in.Dir)
			}
			tw.Flush()
			return nil
		},
	}
	return jsonOK(cmd)
}

// disconnectResult is what `ferry disconnect --json` prints.
type disconnectResult struct {
	ID             string   `json:"id"`
	SecretsRemoved int      `json:"secrets_removed"`
	Purged         []string `json:"purged"`
}

func (c *cli) disconnectCmd() *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:     "disconnect ID",
		GroupID: groupConnectors,
		Short:   "Remove a connector instance (and its system secrets)",
		Long: `Disconnect removes a connector instance and its system's secrets. Its datasets
stay unless --purge is given, which deletes every dataset whose name starts
with "ID-" (and does not belong to another instance with a longer id).`,
		Example: `  ferry disconnect acme
  ferry disconnect acme --purge`,
		Args:              usageArgs(1, 1, "give one instance id (see 'ferry connectors')"),
		ValidArgsFunction: c.completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id := args[0]
			if !c.storeExists() {
				return usagef("disconnect: no connector instance %q (no store in %s)", id, c.g.data)
			}
			store, err := c.openStore(false, false)
			if err != nil {
				return err
			}
			defer store.Close()
			list, err := connectors.List(ctx, store)
			if err != nil {
				return failf("disconnect: %v", err)
			}
			var others []string
			for _, in := range list {
				others = append(others, in.ID)
			}
			removed, err := connectors.Remove(ctx, store, id)
			if err != nil {
				return failf("disconnect: %v", err)
			}
			if !removed {
				return usagef("disconnect: no connector instance %q%s (see 'ferry connectors')", id, didYouMean(id, others))
			}
			nsec, err := secrets.Open(store, c.g.data, c.getenv).DeleteSystem(ctx, id)
			if err != nil {
				return failf("disconnect: %v", err)
			}
			res := disconnectResult{ID: id, SecretsRemoved: nsec, Purged: []string{}}
			if purge {
				_, match := connectors.PurgePrefix(id, others)
				infos, err := store.Datasets(ctx)
				if err != nil {
					return failf("disconnect: %v", err)
				}
				for _, info := range infos {
					if !match(info.Name) {
						continue
					}
					if err := store.DeleteDataset(ctx, info.Name); err != nil {
						return failf("disconnect: %v", err)
					}
					res.Purged = append(res.Purged, info.Name)
				}
				sort.Strings(res.Purged)
			}
			if c.g.json {
				c.printJSON(res)
				return nil
			}
			fmt.Fprintf(c.stdout, "disconnected %s (%s removed)\n", id, plural(nsec, "secret"))
			if purge {
				fmt.Fprintf(c.stdout, "purged %s", plural(len(res.Purged), "dataset"))
				if len(res.Purged) > 0 {
					fmt.Fprintf(c.stdout, ": %s", strings.Join(res.Purged, ", "))
				}
				fmt.Fprintln(c.stdout)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, `also delete the instance's datasets (names starting with "ID-")`)
	return jsonOK(cmd)
}

// directionsText renders explicit directions: ", directions a=push, b=both".
func directionsText(d map[string]string) string {
	if len(d) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(d) {
		parts = append(parts, k+"="+d[k])
	}
	return ", directions " + strings.Join(parts, ", ")
}

// historyText renders a since-limited history: ", history since 2024-05-31T00:00:00Z".
func historyText(in *connectors.Instance) string {
	since, limited, err := in.HistorySince()
	if err != nil || !limited {
		return ""
	}
	return ", history since " + since.Format(time.RFC3339)
}
