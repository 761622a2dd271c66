package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipetest"
)

func (c *cli) testCmd() *cobra.Command {
	var (
		envFile, dir string
		update       bool
	)
	cmd := &cobra.Command{
		Use:     "test CONFIG|CONNECTOR_DIR [PIPE...]",
		GroupID: groupPipelines,
		Short:   "Run a config's tests: test data in, every pipe's output compared with the expected output",
		Long: `Test runs a config (or a connector) against test data and compares what every
pipe produces with the expected output, as 'sesam test' does for a node.

The test directory is "test" beside CONFIG (examples/demo/config ->
examples/demo/test), or inside a connector directory (--tests overrides):

  test.json               optional: $ENV values, connector instances, ignored
                          properties, per-pipe settings
  testdata/<pipe>.json    the entities an input pipe reads instead of its
                          source (REST, json, http_endpoint, embedded); for a
                          share pipe, the records its lookups find
  expected/<pipe>.json    the pipe's expected output

Every pipe runs until nothing changes, on a temporary store; the process
environment and the store in --data are not used. Nothing reaches a system:
input pipes without test data read nothing (local json files and embedded
sources excepted), every system's HTTP client refuses to send, external
sinks are captured in a dataset, and share pipes are planned, not run: their
output is what they would do and send per entity.

Outputs are compared as pretty-printed JSON sorted by _id, without internal
properties (_updated, _ts, _hash, _previous; _id and _deleted are kept) and
without the paths test.json ignores; a difference is shown as a unified
diff. PIPE... restricts the comparison to those pipes. --update writes the
expected files from the output instead. docs/testing.md has the details.

Exit codes: 0 every compared pipe matched (or --update wrote them), 1 a
pipe differs or a run failed, 2 the test cannot run (no test directory, no
expected output, a bad test.json, a config that does not load, a test file
naming no pipe).`,
		Example: `  ferry test examples/demo/config
  ferry test examples/connectors/crm              # a connector's tests (examples/connectors/crm/test)
  ferry test examples/two-way/config global-organisation
  ferry test examples/demo/config --update        # write expected/*.json from the output
  ferry test config/ --tests ci/test --json`,
		Args: usageArgs(1, -1, "give a config (file or directory) or a connector directory, then optionally the pipes to compare"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var env map[string]string
			if envFile != "" {
				m, err := engine.LoadEnvFile(envFile)
				if err != nil {
					return usagef("test: %v", err)
				}
				env = m
			}
			res, err := pipetest.Run(cmd.Context(), pipetest.Options{
				Path: args[0], Dir: dir, Env: env, Pipes: args[1:], Update: update, Logger: c.logger(),
			})
			if err != nil {
				var se *pipetest.SetupError
				if errors.As(err, &se) {
					c.printTestDiagnostics(se.Diagnostics)
					return usagef("test: %v", se.Err)
				}
				return failf("test: %v", err)
			}
			if c.g.json {
				c.printJSON(struct {
					Passed bool `json:"passed"`
					*pipetest.Result
				}{res.Passed(), res})
			} else {
				c.printTestResult(res, update)
			}
			switch {
			case !res.Passed():
				return reported(exitFailed)
			case !update && res.Compared() == 0:
				if !c.g.json {
					return usagef("test: nothing compared: %s holds no expected output (write it with 'ferry test %s --update')", filepath.Join(res.Dir, pipetest.ExpectedDir), args[0])
				}
				return reported(exitUsage)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "tests", "", `the test directory (default: "test" beside CONFIG, or inside CONNECTOR_DIR)`)
	f.StringVar(&envFile, "env", "", "JSON file of $ENV(...) values, on top of test.json's \"env\" (the process environment is not used)")
	f.BoolVar(&update, "update", false, "write the expected files from the output instead of comparing")
	cmd.MarkFlagDirname("tests")
	cmd.MarkFlagFilename("env", "json")
	return jsonOK(cmd)
}

// printTestDiagnostics prints the diagnostics of a config that did not
// load, with a hint where $ENV values come from in a test.
func (c *cli) printTestDiagnostics(diags engine.Diagnostics) {
	env := false
	for _, d := range diags {
		fmt.Fprintln(c.stderr, d.String())
		env = env || strings.Contains(d.Message, "unknown environment variable")
	}
	if env {
		fmt.Fprintln(c.stderr, `ferry: in a test, $ENV values come from test.json's "env" (and --env), connector parameters from its "connectors"; the process environment is not used`)
	}
}

// printTestResult prints one line per pipe, the diffs and a summary.
func (c *cli) printTestResult(res *pipetest.Result, update bool) {
	out := c.stdout
	for _, n := range res.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	if res.RunError != "" {
		fmt.Fprintf(out, "FAIL: a run failed, nothing was compared: %s\n", res.RunError)
		return
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	failed, written, compared := 0, 0, 0
	for _, p := range res.Pipes {
		what := entities(p.Entities)
		if p.Kind != "dataset" {
			what += " (" + p.Kind + ")"
		}
		switch p.Status {
		case pipetest.Passed:
			compared++
			fmt.Fprintf(tw, "ok\t%s\t%s\n", p.Pipe, what)
		case pipetest.Updated:
			written++
			fmt.Fprintf(tw, "updated\t%s\t%s -> %s\n", p.Pipe, what, p.File)
		case pipetest.Untested:
			fmt.Fprintf(tw, "--\t%s\t%s, not compared: no %s\n", p.Pipe, what, p.File)
		case pipetest.Failed, pipetest.Errored:
			compared++
			failed++
			if p.Error != "" {
				what = p.Error
			}
			fmt.Fprintf(tw, "FAIL\t%s\t%s\n", p.Pipe, what)
		}
	}
	tw.Flush()
	for _, p := range res.Pipes {
		if p.Diff != "" {
			fmt.Fprintf(out, "\n%s differs from %s:\n%s", p.Pipe, p.File, p.Diff)
		}
	}
	switch {
	case failed > 0:
		fmt.Fprintf(out, "FAIL: %d of %s differ (%s)\n", failed, plural(compared, "pipe"), res.Dir)
	case update:
		fmt.Fprintf(out, "updated %s, %s unchanged (%s)\n", plural(written, "expected file"), plural(compared, "file"), res.Dir)
	case compared > 0:
		fmt.Fprintf(out, "PASS: %s (%s)\n", plural(compared, "pipe"), res.Dir)
	}
}
