package manifest

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/ferrydata/ferry/templates"
	"github.com/xeipuuv/gojsonschema"
)

// FileName is the manifest's file name inside a connector directory.
const FileName = "manifest.json"

//go:embed schema.json
var schemaJSON []byte

// compiledSchema is the manifest JSON Schema, compiled once.
var compiledSchema = sync.OnceValues(func() (*gojsonschema.Schema, error) {
	return gojsonschema.NewSchema(gojsonschema.NewBytesLoader(schemaJSON))
})

// Schema returns the JSON Schema (draft-07) manifests are validated
// against.
func Schema() []byte { return append([]byte(nil), schemaJSON...) }

// Manifest is a loaded and validated connector manifest.
type Manifest struct {
	Dir  string // connector directory
	Path string // path of manifest.json
	// Raw is the whole manifest, keys in file order (duplicates resolved as
	// Python's json does: last value at the first key's position).
	Raw                      Object
	Auth                     string
	AuthVariant              string
	SystemTemplate           string   // "" when the manifest has no system-template
	AdditionalParameters     []string // in manifest order
	UseWebhookSecret         bool
	RequiresServiceAPIAccess bool
	Datatypes                []Datatype // in manifest order = expansion order

	set *templates.Set
}

// Datatype is one entry of the manifest's datatypes.
type Datatype struct {
	Name     string
	Template string // path relative to the connector directory
	Label    string
	// Parent is the declared parent datatype; HasParent says whether the
	// key is present at all (the "parent" variable exists only then).
	Parent    string
	HasParent bool
	// Parameters are the datatype's template variables, in manifest
	// order (values: string, json.Number or bool).
	Parameters       []Member
	SyncFrequency    string      // "", "slow" or "weekly"
	Webhook          bool        // the datatype receives webhook events
	ScheduleInterval json.Number // "" when not set
	Bidirectional    bool
	Raw              Object
}

// TemplateName is the template's base name without extension; when it
// differs from the datatype name the template is re-used.
func (d *Datatype) TemplateName() string {
	base := path.Base(strings.ReplaceAll(d.Template, `\`, "/"))
	return strings.TrimSuffix(base, path.Ext(base))
}

// LoadError is a manifest problem: the manifest file, the JSON pointer of
// the offending value (or line and column for JSON syntax errors) and what
// is wrong.
type LoadError struct {
	File    string
	Pointer string // JSON pointer, "" for the whole document
	Line    int    // for syntax errors
	Col     int
	Err     error
}

// Error formats the error as "file: pointer: message" (or "file:line:col: message").
func (e *LoadError) Error() string {
	switch {
	case e.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %v", e.File, e.Line, e.Col, e.Err)
	case e.Pointer != "":
		return fmt.Sprintf("%s: %s: %v", e.File, e.Pointer, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

// Unwrap returns the underlying error.
func (e *LoadError) Unwrap() error { return e.Err }

// Load reads dir/manifest.json, validates it against the embedded JSON
// Schema and checks that every template file it names exists inside dir.
//
// Decisions: "auth" is validated when present but not required (sesam-py
// expands without it). additional_parameters names must match
// ^[A-Za-z_][A-Za-z0-9_-]*$: hyphens are accepted because published
// connectors use them as $ENV(name) (wix-connector's "wix-site-id"), and a
// template that uses such a name as a variable fails at expansion exactly
// like sesam-py ("'my' is undefined", with a hint). Names that could not
// even be an environment variable reference (spaces, dots, parentheses,
// ...) are refused here.
func Load(dir string) (*Manifest, error) {
	file := filepath.Join(dir, FileName)
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &LoadError{File: file, Err: fmt.Errorf("read manifest: %w", err)}
	}
	doc, err := decodeOrdered(data)
	if err != nil {
		var je *jsonError
		if errors.As(err, &je) {
			line, col := offsetLineCol(data, je.Offset)
			return nil, &LoadError{File: file, Line: line, Col: col, Err: fmt.Errorf("manifest is not valid JSON: %s", je.Msg)}
		}
		return nil, &LoadError{File: file, Err: err}
	}
	if err := validateSchema(file, data); err != nil {
		return nil, err
	}
	root := doc.(Object) // the schema guarantees an object
	m := &Manifest{Dir: dir, Path: file, Raw: root, set: templates.NewSet(dir)}
	m.Auth = root.GetString("auth")
	m.AuthVariant = root.GetString("auth_variant")
	m.SystemTemplate = root.GetString("system-template")
	m.UseWebhookSecret, _ = mustGet(root, "use_webhook_secret").(bool)
	m.RequiresServiceAPIAccess, _ = mustGet(root, "requires_service_api_access").(bool)
	if ap, ok := mustGet(root, "additional_parameters").(Object); ok {
		for _, mem := range ap {
			m.AdditionalParameters = append(m.AdditionalParameters, mem.Key)
		}
	}
	dts, _ := mustGet(root, "datatypes").(Object)
	for _, mem := range dts {
		raw := mem.Value.(Object)
		d := Datatype{Name: mem.Key, Raw: raw, Template: raw.GetString("template"), Label: raw.GetString("label")}
		if p, ok := raw.Get("parent"); ok {
			d.HasParent = true
			d.Parent, _ = p.(string)
		}
		if ps, ok := mustGet(raw, "parameters").(Object); ok {
			d.Parameters = append(d.Parameters, ps...)
		}
		d.SyncFrequency = raw.GetString("sync_frequency")
		d.Webhook, _ = mustGet(raw, "webhook").(bool)
		d.ScheduleInterval, _ = mustGet(raw, "schedule_interval").(json.Number)
		d.Bidirectional, _ = mustGet(raw, "bidirectional").(bool)
		m.Datatypes = append(m.Datatypes, d)
	}
	if m.SystemTemplate != "" {
		if err := m.checkTemplate("/system-template", m.SystemTemplate); err != nil {
			return nil, err
		}
	}
	for _, d := range m.Datatypes {
		if err := m.checkTemplate("/datatypes/"+escapePointer(d.Name)+"/template", d.Template); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func mustGet(o Object, key string) any {
	v, _ := o.Get(key)
	return v
}

// checkTemplate refuses template paths outside the connector directory
// (lexically and through symbolic links) and missing files.
func (m *Manifest) checkTemplate(ptr, name string) error {
	if err := templates.CheckPath(name); err != nil {
		return &LoadError{File: m.Path, Pointer: ptr, Err: err}
	}
	root, err := os.OpenRoot(m.Dir)
	if err != nil {
		return &LoadError{File: m.Path, Pointer: ptr, Err: fmt.Errorf("open connector directory: %w", err)}
	}
	defer root.Close()
	fi, err := root.Stat(filepath.FromSlash(path.Clean(name)))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return &LoadError{File: m.Path, Pointer: ptr, Err: fmt.Errorf("template file %q not found in %s", name, m.Dir)}
	case err != nil:
		return &LoadError{File: m.Path, Pointer: ptr, Err: fmt.Errorf("template file %q: %w", name, err)}
	case fi.IsDir():
		return &LoadError{File: m.Path, Pointer: ptr, Err: fmt.Errorf("template %q is a directory", name)}
	}
	return nil
}

func validateSchema(file string, data []byte) error {
	schema, err := compiledSchema()
	if err != nil {
		return fmt.Errorf("manifest: internal error compiling the embedded schema: %w", err)
	}
	res, err := schema.Validate(gojsonschema.NewBytesLoader(data))
	if err != nil {
		return &LoadError{File: file, Err: fmt.Errorf("validate manifest: %w", err)}
	}
	if res.Valid() {
		return nil
	}
	errs := res.Errors()
	// Report the most specific problem first, deterministically.
	sort.SliceStable(errs, func(i, j int) bool {
		return len(errs[i].Context().String()) > len(errs[j].Context().String())
	})
	var msgs []string
	first := errs[0]
	for _, e := range errs {
		msgs = append(msgs, pointerOf(e)+": "+describe(e))
	}
	le := &LoadError{File: file, Pointer: pointerOf(first), Err: errors.New(describe(first))}
	if len(msgs) > 1 {
		le.Err = fmt.Errorf("%s (and %d more: %s)", describe(first), len(msgs)-1, strings.Join(msgs[1:], "; "))
	}
	return le
}

func describe(e gojsonschema.ResultError) string {
	if e.Type() == "invalid_property_name" {
		if p, ok := e.Details()["property"].(string); ok {
			return fmt.Sprintf("invalid name %q (must match ^[A-Za-z_][A-Za-z0-9_-]*$, and be an identifier to be usable as a template variable)", p)
		}
	}
	return e.Description()
}

// pointerOf converts gojsonschema's "(root).a.b" context to a JSON pointer.
func pointerOf(e gojsonschema.ResultError) string {
	parts := strings.Split(e.Context().String("\x00"), "\x00")
	var b strings.Builder
	for _, p := range parts[1:] {
		b.WriteByte('/')
		b.WriteString(escapePointer(p))
	}
	if e.Type() == "required" {
		if p, ok := e.Details()["property"].(string); ok {
			b.WriteByte('/')
			b.WriteString(escapePointer(p))
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// offsetLineCol returns the 1-based line and column (in characters) of a
// byte offset.
func offsetLineCol(data []byte, off int) (int, int) {
	if off > len(data) {
		off = len(data)
	}
	s := string(data[:off])
	line := 1 + strings.Count(s, "\n")
	start := strings.LastIndexByte(s, '\n') + 1
	return line, 1 + len([]rune(s[start:]))
}
