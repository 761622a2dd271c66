package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
)

func (c *cli) validateCmd() *cobra.Command {
	var envFile string
	cmd := &cobra.Command{
		Use:     "validate CONFIG...",
		GroupID: groupPipelines,
		Short:   "Check a config without running anything",
		Long: `Validate loads the config files and directories (every *.json, recursively),
resolves $ENV references, adds the connector instances recorded in the store,
and checks every system, pipe, source, transform and sink against its JSON
Schema; then it compiles them (jq programs, DTL rules, Jinja templates, JSON
Schemas) and checks the dataset wiring (one writer per dataset, no cycles).
Every problem is reported at once, each with the file, the JSON pointer, the
component's _id and what is wrong. Exit 2 when there are errors. A $SECRET
that is not in the secret store yet is a warning here (run and serve need
it).

A directory laid out as a Sesam node config (pipes/, systems/,
node-metadata.conf.json, as 'ferry expand --out' and sesam-py write it) is
read from those only: test-env.json and expected/ are not config.`,
		Example: `  ferry validate examples/demo/config --env examples/demo/env/day1.json
  ferry validate --json config/ | jq '.diagnostics[] | select(.severity == "error")'`,
		Args: usageArgs(1, -1, "give one or more config files or directories"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.missingSecretsWarn = true
			plan, diags, err := c.loadPlan(cmd.Context(), envFile, args, false)
			if c.g.json {
				if diags == nil {
					diags = engine.Diagnostics{}
				}
				c.printJSON(map[string]any{"valid": err == nil, "diagnostics": diags})
			}
			if err != nil {
				return err
			}
			if !c.g.json {
				fmt.Fprintf(c.stdout, "ok: %s and %s valid\n", plural(len(plan.Pipes), "pipe"), plural(len(plan.Systems), "system"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&envFile, "env", "", "JSON file of $ENV(...) values (the process environment is used too)")
	return jsonOK(cmd)
}
