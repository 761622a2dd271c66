package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/pipes/all"
)

// Exit codes, the same for every command.
const (
	exitOK     = 0
	exitFailed = 1 // a run (or another operation) failed
	exitUsage  = 2 // bad usage or config: unknown command, flag, pipe, dataset or path; invalid config
)

// dataEnv names the environment variable that sets the default of --data.
const dataEnv = "FERRY_DATA"

// globals are the persistent flags every command takes, anywhere on the
// command line.
type globals struct {
	data      string
	json      bool
	logFormat string
	maxRSSMiB int
	store     string
}

// cli holds the streams and environment a command runs with, so tests run
// commands in-process.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader // ferry secret set reads the value from it
	// stderrTTY enables the live progress line.
	stderrTTY bool
	getenv    func(string) (string, bool)
	// stdinTerminal returns stdin's file descriptor when stdin is a
	// terminal (ferry secret set then prompts without echo).
	stdinTerminal func() (int, bool)
	// missingSecretsWarn turns unknown $SECRET references into warnings
	// (ferry validate).
	missingSecretsWarn bool

	g globals
}

func newCLI(stdout, stderr io.Writer) *cli {
	c := &cli{stdout: stdout, stderr: stderr, stdin: os.Stdin, getenv: os.LookupEnv}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.stderrTTY = true
	}
	c.stdinTerminal = func() (int, bool) {
		if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return int(f.Fd()), true
		}
		return 0, false
	}
	return c
}

// exitError carries a command's exit code. err is printed as
// "ferry: <err>" unless it is nil (the command reported already, e.g.
// config diagnostics).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usagef is a usage or config error (exit 2).
func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// failf is a failure of the operation (exit 1).
func failf(format string, args ...any) error {
	return &exitError{code: exitFailed, err: fmt.Errorf(format, args...)}
}

// reported exits with code after the command printed its own report.
func reported(code int) error { return &exitError{code: code} }

// Annotations of commands.
const (
	// annJSON marks a command that honours --json; the others reject it.
	annJSON = "ferry/json"
)

// jsonOK marks cmd as honouring --json and returns it.
func jsonOK(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annJSON] = "true"
	return cmd
}

// Command groups of the help output.
const (
	groupPipelines  = "pipelines"
	groupInspect    = "inspect"
	groupConnectors = "connectors"
	groupTools      = "tools"
)

// commands returns the top-level commands in help order. To add a command:
// write a file with a constructor `func (c *cli) fooCmd() *cobra.Command`
// (set GroupID, Args, ValidArgsFunction, an Example, and wrap it in jsonOK
// if it honours --json) and list it here.
func (c *cli) commands() []*cobra.Command {
	return []*cobra.Command{
		c.demoCmd(), c.validateCmd(), c.runCmd(), c.serveCmd(), c.shareCmd(), c.retryCmd(),
		c.datasetsCmd(), c.datasetCmd(), c.pipesCmd(), c.pipeCmd(),
		c.testCmd(), c.referenceCmd(),
		c.expandCmd(), c.connectCmd(), c.connectorsCmd(), c.disconnectCmd(), c.secretCmd(), c.compatCmd(),
		c.fakeAPICmd(), c.benchCmd(), c.versionCmd(),
	}
}

// rootCmd builds the command tree. It is built anew for every invocation
// so that flag values never leak from one run to the next (tests run many
// in one process).
func (c *cli) rootCmd() *cobra.Command {
	defData := "ferry-data"
	if v, ok := c.getenv(dataEnv); ok && v != "" {
		defData = v
	}
	root := &cobra.Command{
		Use:   "ferry",
		Short: "Declarative dataset pipelines: a small, fast, open Sesam-style datahub",
		Long: `Ferry runs Sesam-style pipes (source -> transforms -> sink) declared in JSON, or
expanded from connector manifests, and keeps every dataset as an append-only,
versioned log in one embedded bbolt file (--data DIR).

Exit codes: 0 ok, 1 a run failed, 2 bad usage or config.`,
		Example: `  ferry validate examples/demo/config --env examples/demo/env/day1.json
  ferry run examples/demo/config --env examples/demo/env/day1.json
  ferry datasets
  ferry --data /var/lib/ferry serve config/`,
		Version:           versionString(readBuildInfo()),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if c.g.json && cmd.Annotations[annJSON] == "" {
				return usagef("%s does not print JSON: --json is not supported here", cmd.CommandPath())
			}
			switch c.g.logFormat {
			case "text", "json":
			default:
				return usagef("--log-format %q: want text or json", c.g.logFormat)
			}
			return nil
		},
	}
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetIn(c.stdin)
	root.SetVersionTemplate("ferry {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%s: %v (see '%s --help')", cmd.CommandPath(), err, cmd.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&c.g.data, "data", defData, "data directory holding the store (env "+dataEnv+")")
	pf.BoolVar(&c.g.json, "json", false, "print JSON for scripts (commands that print no JSON reject it)")
	pf.StringVar(&c.g.logFormat, "log-format", "text", "log format on stderr: text or json")
	pf.IntVar(&c.g.maxRSSMiB, "max-rss-mib", 0, "resident memory (MiB) above which the store releases its memory-mapped pages (0: 150; -1: no bound)")
	pf.StringVar(&c.g.store, "store", "", storeFlagHelp) // store.go
	root.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	root.MarkPersistentFlagDirname("data")

	root.AddGroup(
		&cobra.Group{ID: groupPipelines, Title: "Pipelines:"},
		&cobra.Group{ID: groupInspect, Title: "Inspect the store:"},
		&cobra.Group{ID: groupConnectors, Title: "Connectors:"},
		&cobra.Group{ID: groupTools, Title: "Tools:"},
	)
	root.SetHelpCommandGroupID(groupTools)
	root.SetCompletionCommandGroupID(groupTools)
	for _, cmd := range c.commands() {
		root.AddCommand(cmd)
	}
	return root
}

// run executes one command line and returns its exit code.
func (c *cli) run(ctx context.Context, args []string) int {
	root := c.rootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			c.errorf("%v", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors: unknown command (with suggestions), bad
	// arguments. They are usage errors.
	msg := strings.TrimRight(err.Error(), "\n")
	c.errorf("%s", msg)
	if strings.HasPrefix(msg, "unknown command") {
		fmt.Fprintln(c.stderr, "Run 'ferry --help' for the list of commands.")
	}
	return exitUsage
}

// groupCmd is a command whose work is done by its subcommands: without one
// it prints its help; an unknown one is a usage error with suggestions.
func groupCmd(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		return usagef("%s; subcommands: %s", msg, strings.Join(names, ", "))
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	return cmd
}

// usageArgs returns an Args validator that accepts between min and max
// positional arguments (max < 0: any number) and otherwise fails with msg.
func usageArgs(min, max int, msg string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			return usagef("%s: %s (see '%s --help')", cmd.CommandPath(), msg, cmd.CommandPath())
		}
		return nil
	}
}

func (c *cli) errorf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "ferry: "+format+"\n", args...)
}

// logger logs to stderr at level in the --log-format.
func (c *cli) loggerAt(level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if c.g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(c.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(c.stderr, opts))
}

// logger is the logger of the one-shot commands: warnings and errors.
func (c *cli) logger() *slog.Logger { return c.loggerAt(slog.LevelWarn) }

// loadPlan loads and compiles config paths together with the connector
// instances recorded in the store (paths may then be empty), resolving
// $SECRET in system configs and printing diagnostics (warnings unless
// quiet). plan is nil when loading failed; err is an *exitError (exit 2)
// when the config has errors (already printed) or cannot be read.
func (c *cli) loadPlan(ctx context.Context, envFile string, paths []string, quiet bool) (*engine.Plan, engine.Diagnostics, error) {
	env, err := c.baseEnv(envFile)
	if err != nil {
		return nil, nil, err
	}
	cfg := &engine.Config{}
	if len(paths) > 0 {
		cfg, err = engine.LoadConfig(paths, env)
	}
	var ce *engine.ConfigError
	// A file with errors (malformed JSON, a bad $ENV) does not stop the
	// others from being compiled: every problem is reported in one go.
	loaded := err == nil || (errors.As(err, &ce) && cfg != nil)
	if loaded {
		if cerr := c.addConnectors(ctx, cfg, env, len(paths) == 0); cerr != nil && !errors.As(cerr, &ce) { // connect.go
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
		return nil, diags, &exitError{code: exitUsage, err: err}
	}
	for _, d := range diags {
		if d.Severity == engine.SevWarning && quiet {
			continue
		}
		fmt.Fprintln(c.stderr, d.String())
	}
	if err != nil {
		n := len(diags.Errors())
		return plan, diags, usagef("the config has %s", plural(n, "error"))
	}
	return plan, diags, nil
}

// baseEnv is the --env file, then the process environment.
func (c *cli) baseEnv(envFile string) (engine.Env, error) {
	fileEnv := map[string]string{}
	if envFile != "" {
		m, err := engine.LoadEnvFile(envFile)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: err}
		}
		fileEnv = m
	}
	return func(name string) (string, bool) {
		if v, ok := fileEnv[name]; ok {
			return v, true
		}
		return c.getenv(name)
	}, nil
}

// storePath is the store file in the data directory.
func (c *cli) storePath() string { return filepath.Join(c.dataDir(), boltstore.FileName) }

func (c *cli) printJSON(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// plural renders "1 pipe", "2 pipes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
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
