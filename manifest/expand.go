package manifest

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/ferrydata/ferry/templates"
)

// Placeholder is the system id sesam-py uses when none is given.
const Placeholder = "xxxxxx"

//go:embed shim.json
var shimSource string

// shimTemplate is sesam-py's connector_cli/templates/shim.json: the
// "<system>-<datatype>-transform" pipe emitted after every datatype.
var shimTemplate = sync.OnceValues(func() (*templates.Template, error) {
	return templates.Compile("shim.json", shimSource)
})

// Options control Expand.
type Options struct {
	// System is the system id; "" means the placeholder "xxxxxx".
	System string
	// Vars are extra injected variables (account_id, base_url, token_url,
	// connected_ts, is_fullsync, service_url, <connector>_webhook_dataset).
	// They override the "$ENV(name)" value of an additional parameter of
	// the same name; datatype parameters in turn override them. nil for a
	// plain expand.
	Vars map[string]any
	// Deploy applies the hosted deployer's injected configuration (pump
	// schedules, webhook permissions); false for a plain expand.
	Deploy bool
	// Datatypes optionally restricts the output to these datatypes (nil:
	// all). Skipped datatypes still contribute their parameters to later
	// ones, so a selected datatype expands exactly as in a full expansion.
	Datatypes []string
}

// Component is one expanded system or pipe.
type Component struct {
	ID       string
	Kind     string // "system" (type "system:*"), "pipe", or "" for any other type
	Datatype string // "" for system-template output
	Template string // the template file that produced it ("shim.json" for shims)
	// JSON is the component with its keys in template order.
	JSON json.RawMessage

	obj Object
}

// Object returns the component's JSON object with its key order.
func (c *Component) Object() Object { return c.obj }

// Decode returns the component decoded the Ferry way (map[string]any,
// json.Number).
func (c *Component) Decode() (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(c.JSON)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode component %q: %w", c.ID, err)
	}
	return m, nil
}

// ErrNoSuchDatatype is returned when Options.Datatypes names a datatype the
// manifest does not declare.
var ErrNoSuchDatatype = errors.New("no such datatype")

// Expand expands the connector exactly as sesam-py's
// expand_connector_config(placeholder) does:
//
//  1. variables: system, then "$ENV(name)" for every additional
//     parameter, then Options.Vars;
//  2. the system-template (if any) is rendered first;
//  3. per datatype in manifest order the datatype's parameters are merged
//     into the variables in place (they stay visible to every later
//     datatype), the template is rendered with the variables plus
//     "datatype" (and "parent" when the datatype declares one), each
//     component of a re-used template gets the WARNING comment, and the
//     shim "-transform" pipe follows;
//  4. boolean variables render as the text "{{@ name @}}" and a JSON
//     string that is exactly that text becomes true/false afterwards;
//  5. the output must be JSON; an object root is wrapped in a list.
//
// Errors name the template file, line and column and the datatype.
func (m *Manifest) Expand(opts Options) ([]Component, error) {
	system := opts.System
	if system == "" {
		system = Placeholder
	}
	var want map[string]bool
	if opts.Datatypes != nil {
		want = map[string]bool{}
		for _, name := range opts.Datatypes {
			if !m.hasDatatype(name) {
				return nil, fmt.Errorf("%s: %w %q", m.Path, ErrNoSuchDatatype, name)
			}
			want[name] = true
		}
	}
	subst := map[string]any{"system": system}
	for _, k := range m.AdditionalParameters {
		subst[k] = "$ENV(" + k + ")"
	}
	for k, v := range opts.Vars {
		subst[k] = v
	}
	var comps []Component
	if m.SystemTemplate != "" {
		tpl, err := m.set.Get(m.SystemTemplate)
		if err != nil {
			return nil, m.wrap(err, "")
		}
		objs, err := render(tpl, subst, "")
		if err != nil {
			return nil, err
		}
		if comps, err = appendComponents(comps, objs, "", m.SystemTemplate); err != nil {
			return nil, err
		}
	}
	shim, err := shimTemplate()
	if err != nil {
		return nil, fmt.Errorf("manifest: internal error compiling shim.json: %w", err)
	}
	for i := range m.Datatypes {
		d := &m.Datatypes[i]
		for _, p := range d.Parameters {
			subst[p.Key] = templateValue(p.Value)
		}
		if want != nil && !want[d.Name] {
			continue
		}
		tpl, err := m.set.Get(d.Template)
		if err != nil {
			return nil, m.wrap(err, d.Name)
		}
		vars := make(map[string]any, len(subst)+2)
		for k, v := range subst {
			vars[k] = v
		}
		vars["datatype"] = d.Name
		if d.HasParent {
			vars["parent"] = d.Parent
		}
		objs, err := render(tpl, vars, d.Name)
		if err != nil {
			return nil, m.hint(err, d.Name, subst)
		}
		if tn := d.TemplateName(); tn != d.Name {
			warning := "WARNING! This pipe is generated from the template of the '" + tn + "' datatype and " +
				"changes will be silently ignored during collapse. For more information see the connectorpy README."
			for j := range objs {
				objs[j].Set("comment", warning)
			}
		}
		if comps, err = appendComponents(comps, objs, d.Name, d.Template); err != nil {
			return nil, err
		}
		shimObjs, err := render(shim, map[string]any{"system": system, "datatype": d.Name}, d.Name)
		if err != nil {
			return nil, err
		}
		if comps, err = appendComponents(comps, shimObjs, d.Name, "shim.json"); err != nil {
			return nil, err
		}
	}
	if opts.Deploy {
		m.applyDeploy(comps, system)
	}
	if err := encodeAll(comps); err != nil {
		return nil, err
	}
	return comps, nil
}

func (m *Manifest) hasDatatype(name string) bool {
	for _, d := range m.Datatypes {
		if d.Name == name {
			return true
		}
	}
	return false
}

func (m *Manifest) wrap(err error, datatype string) error {
	var te *templates.Error
	if errors.As(err, &te) {
		te.Datatype = datatype
		return te
	}
	return fmt.Errorf("%s: datatype %q: %w", m.Dir, datatype, err)
}

// hint explains the sesam-py failure mode of hyphenated names: Jinja reads
// {{@ my-param @}} as my - param.
func (m *Manifest) hint(err error, datatype string, subst map[string]any) error {
	var ue *templates.UndefinedError
	var te *templates.Error
	if errors.As(err, &ue) && errors.As(err, &te) && ue.Name != "" {
		for k := range subst {
			if strings.Contains(k, "-") && strings.HasPrefix(k, ue.Name+"-") {
				te.Err = fmt.Errorf("%w (variable %q contains '-', which the template language reads as a minus sign; use $ENV(%s) in the template text instead)", te.Err, k, k)
				break
			}
		}
	}
	return err
}

// render renders one template and parses its output, sesam-py's render().
func render(tpl *templates.Template, vars map[string]any, datatype string) ([]Object, error) {
	var booleans map[string]bool
	props := vars
	for k, v := range vars {
		b, ok := v.(bool)
		if !ok {
			continue
		}
		if booleans == nil {
			booleans = map[string]bool{}
			props = make(map[string]any, len(vars))
			for k2, v2 := range vars {
				props[k2] = v2
			}
		}
		booleans[k] = b
		props[k] = "{{@ " + k + " @}}"
	}
	out, err := tpl.RenderOutput(props)
	if err != nil {
		var te *templates.Error
		if errors.As(err, &te) {
			te.Datatype = datatype
			return nil, te
		}
		return nil, &templates.Error{File: tpl.Name(), Datatype: datatype, Err: err}
	}
	doc, err := decodeOrdered([]byte(out.Text))
	if err != nil {
		var je *jsonError
		if errors.As(err, &je) {
			line, col := out.SourcePos(je.Offset)
			oline, ocol := offsetLineCol([]byte(out.Text), je.Offset)
			return nil, &templates.Error{File: tpl.Name(), Line: line, Col: col, Datatype: datatype,
				Err: fmt.Errorf("rendered output is not valid JSON at output line %d column %d (char %d): %s; near %q",
					oline, ocol, utf8.RuneCountInString(out.Text[:min(je.Offset, len(out.Text))]), je.Msg, excerpt(out.Text, je.Offset))}
		}
		return nil, &templates.Error{File: tpl.Name(), Datatype: datatype, Err: err}
	}
	if booleans != nil {
		doc, err = replaceBooleans(doc, booleans)
		if err != nil {
			return nil, &templates.Error{File: tpl.Name(), Datatype: datatype, Err: err}
		}
	}
	var list []any
	switch x := doc.(type) {
	case []any:
		list = x
	default:
		list = []any{x}
	}
	objs := make([]Object, len(list))
	for i, e := range list {
		o, ok := e.(Object)
		if !ok {
			return nil, &templates.Error{File: tpl.Name(), Datatype: datatype,
				Err: fmt.Errorf("component %d of the rendered output is a JSON %s, not an object", i, jsonType(e))}
		}
		objs[i] = o
	}
	return objs, nil
}

// templateValue converts a manifest value for the templates: parameters of
// any JSON type reach them unchanged, as in sesam-py, with objects as
// map[string]any (the template language's dicts, whose keys iterate and
// print sorted, where Python keeps the manifest's order).
func templateValue(v any) any {
	switch x := v.(type) {
	case Object:
		m := make(map[string]any, len(x))
		for _, mem := range x {
			m[mem.Key] = templateValue(mem.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = templateValue(e)
		}
		return out
	}
	return v
}

// replaceBooleans turns JSON strings that are exactly "{{@ name @}}" for a
// boolean variable into that boolean. Python does this on the serialised
// text, where a placeholder used as an object key breaks the JSON; that is
// reported as an error here too.
func replaceBooleans(v any, booleans map[string]bool) (any, error) {
	placeholder := func(s string) (bool, bool) {
		if !strings.HasPrefix(s, "{{@ ") || !strings.HasSuffix(s, " @}}") {
			return false, false
		}
		b, ok := booleans[s[4:len(s)-4]]
		return b, ok
	}
	switch x := v.(type) {
	case string:
		if b, ok := placeholder(x); ok {
			return b, nil
		}
	case []any:
		for i := range x {
			r, err := replaceBooleans(x[i], booleans)
			if err != nil {
				return nil, err
			}
			x[i] = r
		}
	case Object:
		for i := range x {
			if _, ok := placeholder(x[i].Key); ok {
				return nil, fmt.Errorf("boolean variable placeholder %q used as an object key", x[i].Key)
			}
			r, err := replaceBooleans(x[i].Value, booleans)
			if err != nil {
				return nil, err
			}
			x[i].Value = r
		}
	}
	return v, nil
}

func appendComponents(comps []Component, objs []Object, datatype, template string) ([]Component, error) {
	for _, o := range objs {
		c := Component{Datatype: datatype, Template: template, obj: o}
		c.ID = o.GetString("_id")
		typ := o.GetString("type")
		switch {
		case typ == "pipe":
			c.Kind = "pipe"
		case strings.HasPrefix(typ, "system:"):
			c.Kind = "system"
		}
		comps = append(comps, c)
	}
	return comps, nil
}

// encodeAll fills every component's JSON from its object.
func encodeAll(comps []Component) error {
	for i := range comps {
		b, err := appendJSON(nil, comps[i].obj)
		if err != nil {
			return fmt.Errorf("encode component %q: %w", comps[i].ID, err)
		}
		comps[i].JSON = b
	}
	return nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

func excerpt(s string, off int) string {
	lo, hi := max(off-20, 0), min(off+20, len(s))
	return strings.ToValidUTF8(s[lo:hi], "")
}
