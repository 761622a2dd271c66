package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/all"
)

// referenceCommand regenerates docs/reference.md (TestReferenceDoc).
const referenceCommand = "go run ./cmd/ferry reference > docs/reference.md"

func (c *cli) referenceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "reference",
		GroupID: groupTools,
		Short:   "Print the reference of every system, source, transform, template and sink, from their JSON Schemas",
		Long: `Reference prints, as Markdown, every component type of the registry with its
status, its summary and its options (type, required, description, allowed
values, default) read from the JSON Schema each type is validated with, plus
the pipe object itself. docs/reference.md is this output; --json prints the
registry's schemas as they are, for editors and tools.`,
		Example: `  ferry reference > docs/reference.md
  ferry reference --json | jq '.sources.rest'`,
		Args: usageArgs(0, 0, "takes no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := all.Registry()
			if c.g.json {
				out := map[string]map[string]any{}
				for _, k := range referenceKinds {
					m := map[string]any{}
					for _, name := range reg.Names(k.kind) {
						spec, _ := reg.SpecOf(k.kind, name)
						var schema any
						if spec.Schema != "" {
							if err := json.Unmarshal([]byte(spec.Schema), &schema); err != nil {
								return failf("reference: schema of %s %s: %v", k.kind, name, err)
							}
						}
						m[name] = map[string]any{"summary": spec.Summary, "status": spec.Status, "schema": schema}
					}
					out[k.key] = m
				}
				var pipe any
				json.Unmarshal([]byte(engine.PipeSchema()), &pipe)
				out["pipe"] = map[string]any{"schema": pipe}
				c.printJSON(out)
				return nil
			}
			if err := writeReference(c.stdout, reg); err != nil {
				return failf("reference: %v", err)
			}
			return nil
		},
	}
	return jsonOK(cmd)
}

// referenceKinds are the sections of the reference, in order.
var referenceKinds = []struct {
	kind                  engine.Kind
	key, title            string
	prefix, suffix, intro string
}{
	{engine.KindSystem, "systems", "Systems", "system:", "", "A system is a top-level component (`\"type\": \"system:<kind>\"`) that holds a connection: URL, credentials, HTTP settings. `$SECRET(name)` is resolved in system configs only."},
	{engine.KindSource, "sources", "Sources", "", " source", "A pipe's `source` (`\"source\": {\"type\": ...}`). Every source also takes `if_source_empty` where listed."},
	{engine.KindTransform, "transforms", "Transforms", "", " transform", "A pipe's `transform`: one object, a list, or `{\"type\": \"chained\", \"transforms\": [...]}`; they run in order on each batch."},
	{engine.KindTemplate, "templates", "Built-in templates", "", "", "Sesam's built-in transform templates, used as `{\"type\": \"template\", \"template\": \"<name>\", \"properties\": {...}}`; the options below go under `properties`."},
	{engine.KindSink, "sinks", "Sinks", "", " sink", "A pipe's `sink`; without one, or without a `type`, a dataset sink named after the pipe."},
}

// writeReference writes the Markdown reference of reg.
func writeReference(w io.Writer, reg *engine.Registry) error {
	var b strings.Builder
	b.WriteString(`# Component reference

Every component type Ferry runs, with its options, generated from the JSON Schemas the binary validates
configs with (` + "`" + `engine.Registry` + "`" + `). Do not edit by hand: regenerate with

` + "```sh\n" + referenceCommand + "\n```" + `

(` + "`TestReferenceDoc`" + ` fails while this file is stale). Keys a schema does not list are accepted with a warning.
Status: *stable*, or *beta* (works, may still change). The [guide](guide.md) explains how the parts fit
together; [writing-connectors.md](writing-connectors.md) covers connectors.

`)
	// Contents.
	b.WriteString("- [The pipe](#the-pipe)\n")
	for _, k := range referenceKinds {
		var links []string
		for _, name := range reg.Names(k.kind) {
			if spec, _ := reg.SpecOf(k.kind, name); spec.Status != "unsupported" {
				links = append(links, fmt.Sprintf("[%s](#%s)", k.prefix+name, anchor(k.prefix+name+k.suffix)))
			}
		}
		fmt.Fprintf(&b, "- [%s](#%s): %s\n", k.title, anchor(k.title), strings.Join(links, ", "))
	}
	b.WriteString("- [Recognised, not supported yet](#recognised-not-supported-yet)\n\n")

	b.WriteString("## The pipe\n\nA pipe is a top-level component (`\"type\": \"pipe\"`): source → transforms → sink, run in batches by its pump.\n\n")
	if err := optionsTable(&b, engine.PipeSchema(), false); err != nil {
		return fmt.Errorf("pipe schema: %w", err)
	}
	unsupported := map[engine.Kind][]string{}
	for _, k := range referenceKinds {
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", k.title, k.intro)
		for _, name := range reg.Names(k.kind) {
			spec, _ := reg.SpecOf(k.kind, name)
			if spec.Status == "unsupported" {
				unsupported[k.kind] = append(unsupported[k.kind], k.prefix+name)
				continue
			}
			fmt.Fprintf(&b, "### %s%s\n\n*%s.* %s\n\n", k.prefix+name, k.suffix, spec.Status, spec.Summary)
			if err := optionsTable(&b, spec.Schema, k.kind == engine.KindSystem); err != nil {
				return fmt.Errorf("schema of %s %s: %w", k.kind, name, err)
			}
		}
	}
	b.WriteString("## Recognised, not supported yet\n\nSesam types `ferry validate` recognises and reports as `not supported yet: <kind>:<type>`:\n\n")
	for _, k := range referenceKinds {
		if names := unsupported[k.kind]; len(names) > 0 {
			fmt.Fprintf(&b, "- %s: %s\n", k.title, "`"+strings.Join(names, "`, `")+"`")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// anchor is GitHub's heading anchor of a simple heading.
func anchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// schemaNode is the part of a JSON Schema the reference reads.
type schemaNode struct {
	Type                 any                    `json:"type"`
	Enum                 []any                  `json:"enum"`
	Const                any                    `json:"const"`
	Description          string                 `json:"description"`
	Default              any                    `json:"default"`
	Properties           map[string]*schemaNode `json:"properties"`
	Required             []string               `json:"required"`
	Items                *schemaNode            `json:"items"`
	AdditionalProperties json.RawMessage        `json:"additionalProperties"`
	OneOf                []*schemaNode          `json:"oneOf"`
	AnyOf                []*schemaNode          `json:"anyOf"`
	Minimum              *float64               `json:"minimum"`
	ExclusiveMinimum     *float64               `json:"exclusiveMinimum"`
	Maximum              *float64               `json:"maximum"`
	MinLength            *int                   `json:"minLength"`
}

// optionsTable writes the options of an object schema as a table.
// expandMaps also lists the keys of objects of named objects (a system's
// operations); pipes that take the same keys say so instead.
func optionsTable(b *strings.Builder, text string, expandMaps bool) error {
	if strings.TrimSpace(text) == "" {
		b.WriteString("No options.\n\n")
		return nil
	}
	var root schemaNode
	if err := json.Unmarshal([]byte(text), &root); err != nil {
		return err
	}
	var rows [][3]string
	addRows(&rows, "", &root, 0, expandMaps)
	if len(rows) == 0 {
		b.WriteString("No options.\n\n")
		return nil
	}
	b.WriteString("| key | type | description |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	b.WriteString("\n")
	return nil
}

// addRows adds a row per property of n (prefix is the dotted path so
// far), nested objects up to three levels deep. The component's own
// "type" (a const) and "_id" rows are left out of component tables.
func addRows(rows *[][3]string, prefix string, n *schemaNode, depth int, expandMaps bool) {
	names := make([]string, 0, len(n.Properties))
	for k := range n.Properties {
		names = append(names, k)
	}
	sort.Strings(names)
	required := map[string]bool{}
	for _, r := range n.Required {
		required[r] = true
	}
	for _, name := range names {
		p := n.Properties[name]
		if depth == 0 && name == "type" && p.Const != nil && prefix == "" {
			continue
		}
		key := "`" + prefix + name + "`"
		desc := p.Description
		if desc == "" {
			desc = metaKeys[name]
		}
		if required[name] {
			desc = strings.TrimSpace("**Required.** " + desc)
		}
		if extra := constraints(p); extra != "" {
			desc = strings.TrimSpace(desc + " " + extra)
		}
		*rows = append(*rows, [3]string{key, typeText(p), cell(desc)})
		if depth >= 2 {
			continue
		}
		switch {
		case p.Properties != nil:
			addRows(rows, prefix+name+".", p, depth+1, expandMaps)
		case expandMaps && len(p.AdditionalProperties) > 0 && p.AdditionalProperties[0] == '{':
			var ap schemaNode
			if json.Unmarshal(p.AdditionalProperties, &ap) == nil && ap.Properties != nil {
				addRows(rows, prefix+name+".<name>.", &ap, depth+1, expandMaps)
			}
		case p.Items != nil && p.Items.Properties != nil:
			addRows(rows, prefix+name+"[].", p.Items, depth+1, expandMaps)
		}
	}
}

// metaKeys describe the keys every Sesam component may carry, when its
// schema does not.
var metaKeys = map[string]string{
	"comment":     "Free text, ignored.",
	"description": "Free text, ignored.",
	"name":        "A display name, ignored.",
	"metadata":    "Free-form metadata, ignored.",
	"_id":         "The component's id.",
}

// typeText renders a property's type: its JSON types, or its constant.
func typeText(p *schemaNode) string {
	if p.Const != nil {
		return "`" + jsonText(p.Const) + "`"
	}
	var types []string
	add := func(n *schemaNode) {
		switch t := n.Type.(type) {
		case string:
			types = append(types, t)
		case []any:
			for _, x := range t {
				types = append(types, fmt.Sprint(x))
			}
		}
		if n.Type == nil && len(n.Enum) > 0 {
			types = append(types, enumType(n.Enum))
		}
		if t, ok := n.Type.(string); ok && t == "array" && n.Items != nil {
			if it, ok := n.Items.Type.(string); ok {
				types[len(types)-1] = "array of " + it
			}
		}
	}
	add(p)
	for _, alt := range append(p.OneOf, p.AnyOf...) {
		add(alt)
	}
	seen := map[string]bool{}
	var out []string
	for _, t := range types {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return "any"
	}
	return strings.Join(out, ", ")
}

// enumType is the JSON type of an enum's values, when they share one.
func enumType(vals []any) string {
	t := ""
	for _, v := range vals {
		var vt string
		switch v.(type) {
		case string:
			vt = "string"
		case float64:
			vt = "number"
		case bool:
			vt = "boolean"
		default:
			return "any"
		}
		if t != "" && t != vt {
			return "any"
		}
		t = vt
	}
	return t
}

// constraints renders allowed values, bounds and the default.
func constraints(p *schemaNode) string {
	var parts []string
	if len(p.Enum) > 0 {
		vals := make([]string, len(p.Enum))
		for i, v := range p.Enum {
			vals[i] = "`" + jsonText(v) + "`"
		}
		parts = append(parts, "One of "+strings.Join(vals, ", ")+".")
	}
	switch {
	case p.Minimum != nil && p.Maximum != nil:
		parts = append(parts, fmt.Sprintf("From %s to %s.", numText(*p.Minimum), numText(*p.Maximum)))
	case p.Minimum != nil:
		parts = append(parts, fmt.Sprintf("At least %s.", numText(*p.Minimum)))
	case p.ExclusiveMinimum != nil:
		parts = append(parts, fmt.Sprintf("Above %s.", numText(*p.ExclusiveMinimum)))
	}
	if p.Default != nil {
		parts = append(parts, "Default `"+jsonText(p.Default)+"`.")
	}
	return strings.Join(parts, " ")
}

func numText(f float64) string {
	if f == math.Trunc(f) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprint(f)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
