package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/manifest"
)

// expandCmd prints a connector's expansion as a JSON array (2-space
// indent, keys in template order), or with --out writes it like sesam-py's
// expand_connector (pipes/*.conf.json, systems/*.conf.json,
// node-metadata.conf.json, test-env.json; webhook permissions on "-event"
// http_endpoint pipes with use_webhook_secret). $ENV and $SECRET
// references are printed as they are: expand never resolves secrets.
func (c *cli) expandCmd() *cobra.Command {
	var system, out string
	cmd := &cobra.Command{
		Use:     "expand CONNECTOR_DIR",
		GroupID: groupConnectors,
		Short:   "Expand a connector's manifest and templates into systems and pipes",
		Long: `Expand renders a Sesam connector (manifest.json + templates/) as sesam-py does
and prints the systems and pipes as one JSON array, or with --out writes them
as pipes/*.conf.json, systems/*.conf.json, node-metadata.conf.json and
test-env.json, a directory 'ferry validate DIR --env DIR/test-env.json'
accepts. $ENV and $SECRET references are kept as they are. With --json and
--out it prints what it wrote as JSON.`,
		Example: `  ferry expand cmd/ferry/testdata/powerofficego-connector --system pog
  ferry expand ../shared/connectors/hubspot-connector --out /tmp/hubspot`,
		Args: usageArgs(1, 1, "give one connector directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manifest.Load(args[0])
			if err != nil {
				return usagef("expand: %v", err)
			}
			comps, err := m.Expand(manifest.Options{System: system})
			if err != nil {
				// Template errors name the file relative to the connector.
				return usagef("expand: %s: %v", m.Dir, err)
			}
			if out != "" {
				if err := manifest.WriteExpanded(out, m, comps); err != nil {
					return failf("expand: %v", err)
				}
				pipes, systems := 0, 0
				for _, comp := range comps {
					switch comp.Kind {
					case "pipe":
						pipes++
					case "system":
						systems++
					}
				}
				if c.g.json {
					c.printJSON(map[string]any{"connector": m.Path, "out": out, "pipes": pipes, "systems": systems})
					return nil
				}
				fmt.Fprintf(c.stdout, "wrote %s and %s of %s to %s\n", plural(pipes, "pipe"), plural(systems, "system"), m.Path, out)
				fmt.Fprintf(c.stdout, "fill in %s, then check it with: ferry validate %s --env %s\n",
					filepath.Join(out, manifest.Profile+"-env.json"), out, filepath.Join(out, manifest.Profile+"-env.json"))
				return nil
			}
			data, err := expandedJSON(comps)
			if err != nil {
				return failf("expand: %s: %v", m.Path, err)
			}
			c.stdout.Write(data)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&system, "system", manifest.Placeholder, "system id to expand with")
	f.StringVar(&out, "out", "", "write pipes/ and systems/ config files into this directory instead of printing")
	cmd.MarkFlagDirname("out")
	return jsonOK(cmd)
}

// expandedJSON renders components as a JSON array with 2-space indent,
// keys in template order, and a final newline.
func expandedJSON(comps []manifest.Component) ([]byte, error) {
	var buf bytes.Buffer
	if len(comps) == 0 {
		return []byte("[]\n"), nil
	}
	buf.WriteString("[\n")
	for i, comp := range comps {
		buf.WriteString("  ")
		if err := json.Indent(&buf, comp.JSON, "  ", "  "); err != nil {
			return nil, fmt.Errorf("component %q: %w", comp.ID, err)
		}
		if i < len(comps)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]\n")
	return buf.Bytes(), nil
}
