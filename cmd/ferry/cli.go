package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/all"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // a run failed
	exitUsage  = 2 // bad usage or config
)

// cli holds the streams and environment a command runs with, so tests run
// commands in-process.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader // for ferry secret set --stdin
	// stderrTTY enables the live progress line.
	stderrTTY bool
	getenv    func(string) (string, bool)
}

func newCLI(stdout, stderr io.Writer) *cli {
	c := &cli{stdout: stdout, stderr: stderr, stdin: os.Stdin, getenv: os.LookupEnv}
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			c.stderrTTY = true
		}
	}
	return c
}

type command struct {
	name    string
	args    string
	summary string
	run     func(c *cli, ctx context.Context, args []string) int
}

func commands() []command {
	return []command{
		{"validate", "CONFIG...", "check a config (schemas, references, jq) without running anything", (*cli).cmdValidate},
		{"run", "[CONFIG] [PIPE...]", "run pipes once, in dependency order, until nothing changes", (*cli).cmdRun},
		{"serve", "[CONFIG]", "run the scheduler and the HTTP API until SIGINT/SIGTERM", (*cli).cmdServe},
		{"datasets", "", "list datasets", (*cli).cmdDatasets},
		{"dataset", "show NAME", "show a dataset's entities", (*cli).cmdDataset},
		{"pipes", "[CONFIG]", "list pipes and their state", (*cli).cmdPipes},
		{"pipe", "log NAME", "show a pipe's run log", (*cli).cmdPipe},
		{"expand", "CONNECTOR_DIR [--system ID] [--out DIR]", "expand a connector's manifest and templates into systems and pipes", (*cli).cmdExpand},
		{"connect", "CONNECTOR_DIR --system ID", "record a connector instance; run/serve then load its pipes", (*cli).cmdConnect},
		{"connectors", "", "list connector instances", (*cli).cmdConnectors},
		{"disconnect", "ID [--purge]", "remove a connector instance", (*cli).cmdDisconnect},
		{"secret", "set|list|rm", "manage encrypted secrets for $SECRET(name)", (*cli).cmdSecret},
		{"compat", "DIR [--json]", "report which components of the connectors under DIR Ferry supports", (*cli).cmdCompat},
		{"fake-api", "[--addr ADDR]", "serve a fake REST API for demos and tests", (*cli).cmdFakeAPI},
		{"bench", "", "measure throughput of the store and runner", (*cli).cmdBench},
		{"version", "", "print the version", (*cli).cmdVersion},
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func (c *cli) usage() {
	fmt.Fprintln(c.stderr, "ferry: declarative dataset pipelines\n\nUsage: ferry COMMAND [ARGS] [FLAGS]\n\nCommands:")
	tw := tabwriter.NewWriter(c.stderr, 2, 4, 2, ' ', 0)
	for _, cmd := range commands() {
		fmt.Fprintf(tw, "  %s %s\t%s\n", cmd.name, cmd.args, cmd.summary)
	}
	tw.Flush()
	fmt.Fprintln(c.stderr, "\nEvery command takes --data DIR (default ./ferry-data). Run 'ferry COMMAND -h' for its flags.")
}

func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		c.usage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			return cmd.run(c, ctx, args[1:])
		}
	}
	fmt.Fprintf(c.stderr, "ferry: unknown command %q\n\n", args[0])
	c.usage()
	return exitUsage
}

func (c *cli) cmdVersion(ctx context.Context, args []string) int {
	fmt.Fprintln(c.stdout, "ferry", version)
	return exitOK
}

// flags is the common flag set of a command.
type flags struct {
	fs     *flag.FlagSet
	data   *string
	env    *string
	json   *bool
	noSync *bool
	mapped *int
	store  *string
}

func (c *cli) newFlags(name string) *flags {
	fs := flag.NewFlagSet("ferry "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	f := &flags{fs: fs}
	f.data = fs.String("data", "ferry-data", "data directory holding the store")
	f.mapped = fs.Int("max-rss-mib", 0, "resident memory (MiB) above which the memory-mapped store file's pages are released to the page cache (0: 240; -1: no bound)")
	f.json = fs.Bool("json", false, "print JSON for scripts")
	f.store = fs.String("store", "", storeFlagHelp) // store.go
	return f
}

func (f *flags) withEnv() *flags {
	f.env = f.fs.String("env", "", "JSON file of $ENV(...) values (the process environment is used too)")
	return f
}

// parse accepts flags before, between and after positional arguments.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		args = f.fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) errorf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "ferry: "+format+"\n", args...)
}

func (c *cli) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// loadPlan loads and compiles config paths together with the connector
// instances recorded in the store (paths may then be empty), resolving
// $SECRET in system configs, printing diagnostics. ok is false when the
// config has errors (already reported).
func (c *cli) loadPlan(ctx context.Context, f *flags, paths []string, quiet bool) (*engine.Plan, bool) {
	fileEnv := map[string]string{}
	if f.env != nil && *f.env != "" {
		m, err := engine.LoadEnvFile(*f.env)
		if err != nil {
			c.errorf("%v", err)
			return nil, false
		}
		fileEnv = m
	}
	env := func(name string) (string, bool) {
		if v, ok := fileEnv[name]; ok {
			return v, true
		}
		return c.getenv(name)
	}
	cfg, err := &engine.Config{}, error(nil)
	if len(paths) > 0 {
		cfg, err = engine.LoadConfig(paths, env)
	}
	var ce *engine.ConfigError
	// A file with errors (malformed JSON, a bad $ENV) does not stop the
	// others from being compiled: every problem is reported in one go.
	loaded := err == nil || (errors.As(err, &ce) && cfg != nil)
	if loaded {
		if cerr := c.addConnectors(ctx, f, cfg, env, len(paths) == 0); cerr != nil && !errors.As(cerr, &ce) { // connect.go
			err = cerr
			loaded = false
		}
	}
	var diags engine.Diagnostics
	if cfg != nil {
		diags = cfg.Diagnostics
	}
	var plan *engine.Plan
	if loaded {
		plan, err = engine.Compile(cfg, all.Registry(), c.logger())
		if plan != nil {
			diags = plan.Diagnostics
		}
	}
	if err != nil && !errors.As(err, &ce) {
		c.errorf("%v", err)
		return nil, false
	}
	for _, d := range diags {
		if d.Severity == engine.SevWarning && quiet {
			continue
		}
		fmt.Fprintln(c.stderr, d.String())
	}
	if err != nil {
		return plan, false
	}
	return plan, true
}

func (c *cli) printJSON(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (c *cli) cmdValidate(ctx context.Context, args []string) int {
	f := c.newFlags("validate").withEnv()
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	if len(pos) == 0 {
		c.errorf("validate: give a config file or directory")
		return exitUsage
	}
	plan, ok := c.loadPlan(ctx, f, pos, false)
	if *f.json {
		var diags engine.Diagnostics
		if plan != nil {
			diags = plan.Diagnostics
		}
		if diags == nil {
			diags = engine.Diagnostics{}
		}
		c.printJSON(map[string]any{"valid": ok, "diagnostics": diags})
	}
	if !ok {
		return exitUsage
	}
	if !*f.json {
		fmt.Fprintf(c.stdout, "ok: %d pipes valid\n", len(plan.Pipes))
	}
	return exitOK
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func trunc(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
