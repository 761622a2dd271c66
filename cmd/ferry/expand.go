package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/ferrydata/ferry/manifest"
)

// cmdExpand prints a connector's expansion as a JSON array (2-space
// indent, keys in template order), or with --out writes it like sesam-py's
// expand_connector (pipes/*.conf.json, systems/*.conf.json,
// node-metadata.conf.json, test-env.json; webhook permissions on "-event"
// http_endpoint pipes with use_webhook_secret). $ENV and $SECRET
// references are printed as they are: expand never resolves secrets.
func (c *cli) cmdExpand(ctx context.Context, args []string) int {
	f := c.newFlags("expand")
	system := f.fs.String("system", manifest.Placeholder, "system id to expand with")
	out := f.fs.String("out", "", "write pipes/ and systems/ config files into this directory instead of printing")
	pos, err := f.parse(args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		c.errorf("expand: give one connector directory")
		return exitUsage
	}
	m, err := manifest.Load(pos[0])
	if err != nil {
		c.errorf("expand: %v", err)
		return exitUsage
	}
	comps, err := m.Expand(manifest.Options{System: *system})
	if err != nil {
		// Template errors name the file relative to the connector.
		c.errorf("expand: %s: %v", m.Dir, err)
		return exitUsage
	}
	if *out != "" {
		if err := manifest.WriteExpanded(*out, m, comps); err != nil {
			c.errorf("expand: %v", err)
			return exitFailed
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
		fmt.Fprintf(c.stdout, "wrote %d pipes and %d systems of %s to %s\n", pipes, systems, m.Path, *out)
		return exitOK
	}
	data, err := expandedJSON(comps)
	if err != nil {
		c.errorf("expand: %s: %v", m.Path, err)
		return exitFailed
	}
	c.stdout.Write(data)
	return exitOK
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
