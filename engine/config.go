package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Severity of a diagnostic.
type Severity string

// Diagnostic severities.
const (
	SevError   Severity = "error"
	SevWarning Severity = "warning"
)

// Diagnostic is one problem found in a config, located by file and JSON
// pointer (and line:column for syntax errors), and by the _id of the pipe
// or system it concerns and the part of the pipe (transform[0]).
type Diagnostic struct {
	Severity Severity `json:"severity"`
	File     string   `json:"file,omitempty"`
	Pointer  string   `json:"pointer,omitempty"`
	Line     int      `json:"line,omitempty"`
	Column   int      `json:"column,omitempty"`
	Message  string   `json:"message"`
	// Pipe or System is the _id of the component the problem is in.
	Pipe   string `json:"pipe,omitempty"`
	System string `json:"system,omitempty"`
	// Path is the part of the pipe the problem is in: "source",
	// "transform[i]" (i counts the pipe's transforms in order, chained ones
	// flattened, as run errors do), "sink" or "pump"; "" for the pipe's own
	// keys and for systems.
	Path string `json:"path,omitempty"`
}

// String renders the diagnostic lint-style:
// `severity: file:line:col: pointer: message (pipe "id", transform[0])`.
// The component comes last so that "pointer: message" stays one piece for
// tools (and tests) that match it.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(string(d.Severity))
	b.WriteString(": ")
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", d.Line, d.Column)
		}
		b.WriteString(": ")
	}
	if d.Pointer != "" {
		b.WriteString(d.Pointer)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	switch {
	case d.Pipe != "":
		fmt.Fprintf(&b, " (pipe %q", d.Pipe)
		if d.Path != "" {
			b.WriteString(", " + d.Path)
		}
		b.WriteByte(')')
	case d.System != "":
		fmt.Fprintf(&b, " (system %q)", d.System)
	}
	return b.String()
}

// partOf names the part of a pipe a pointer inside it is in: "source",
// "sink", "pump", "transform" (the caller knows the index), or "" for the
// pipe's own keys.
func partOf(rel string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(rel, "/"), "/")
	switch seg {
	case "source", "sink", "pump", "transform":
		return seg
	}
	return ""
}

// setComponent records which component a diagnostic concerns and, for a
// pipe, the part of it (source, transform[i], sink, pump) that rel, the
// pointer inside the component, is in; part overrides it when set.
func (d *Diagnostic) setComponent(comp *Component, rel, part string) {
	if comp == nil {
		return
	}
	if !comp.IsPipe() {
		d.System = comp.ID
		return
	}
	d.Pipe = comp.ID
	if part == "" {
		part = partOf(rel)
	}
	d.Path = part
}

// Diagnostics is a list of problems; as an error it reports the errors.
type Diagnostics []Diagnostic

// Errors returns only the error diagnostics.
func (ds Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == SevError {
			out = append(out, d)
		}
	}
	return out
}

// Warnings returns only the warnings.
func (ds Diagnostics) Warnings() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == SevWarning {
			out = append(out, d)
		}
	}
	return out
}

// ConfigError is returned when a config has errors; it carries every
// diagnostic, warnings included.
type ConfigError struct{ Diagnostics Diagnostics }

// Error lists the error diagnostics (warnings are left out), one per line
// when there are several.
func (e *ConfigError) Error() string {
	errs := e.Diagnostics.Errors()
	lines := make([]string, 0, len(errs))
	for _, d := range errs {
		lines = append(lines, d.String())
	}
	if len(lines) == 1 {
		return lines[0]
	}
	return fmt.Sprintf("%d errors in config:\n  %s", len(lines), strings.Join(lines, "\n  "))
}

// Component is one system or pipe of a config, as loaded.
type Component struct {
	ID      string
	Type    string // "pipe" or "system:<kind>"
	File    string
	Pointer string // JSON pointer of the component within File
	Raw     map[string]any
}

// IsPipe reports whether the component is a pipe.
func (c *Component) IsPipe() bool { return c.Type == "pipe" }

// Config is a loaded, $ENV-resolved set of systems and pipes.
type Config struct {
	Systems     []*Component
	Pipes       []*Component
	Diagnostics Diagnostics
	// Redactor knows the secret values resolved into the config (package
	// secrets sets it); Compile hands it to the plan. nil: none.
	Redactor *Redactor
}

// Pipe returns the pipe component with the given id.
func (c *Config) Pipe(id string) *Component {
	for _, p := range c.Pipes {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// System returns the system component with the given id.
func (c *Config) System(id string) *Component {
	for _, s := range c.Systems {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// Env resolves $ENV(name) references.
type Env func(name string) (string, bool)

// EnvFrom returns an Env that looks in file values first, then the process
// environment.
func EnvFrom(file map[string]string) Env {
	return func(name string) (string, bool) {
		if v, ok := file[name]; ok {
			return v, true
		}
		return os.LookupEnv(name)
	}
}

// LoadEnvFile reads a JSON object of variable values (strings, numbers and
// booleans are accepted; numbers and booleans are used as their JSON text).
func LoadEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("env file: %w", err)
	}
	v, err := DecodeValue(data)
	if err != nil {
		return nil, fmt.Errorf("env file %s: %w", path, locate(data, err))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("env file %s: must be a JSON object of name -> value", path)
	}
	out := make(map[string]string, len(m))
	for k, val := range m {
		switch x := val.(type) {
		case string:
			out[k] = x
		case json.Number:
			out[k] = string(x)
		case bool:
			out[k] = fmt.Sprint(x)
		default:
			return nil, fmt.Errorf("env file %s: %q must be a string, number or boolean, not %s", path, k, TypeName(val))
		}
	}
	return out, nil
}

// locate turns a SyntaxError offset into line:column text.
func locate(data []byte, err error) error {
	var se *SyntaxError
	if !errors.As(err, &se) {
		return err
	}
	line, col := LineCol(data, se.Offset)
	return fmt.Errorf("line %d, column %d: %s", line, col, se.Msg)
}

// LineCol converts a byte offset to 1-based line and column.
func LineCol(data []byte, off int) (int, int) {
	if off > len(data) {
		off = len(data)
	}
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

// ConfigFiles lists the *.json files of the given paths: a file as is, a
// directory recursively, in lexical order (hidden directories skipped). A
// directory laid out as a Sesam node config (see isNodeLayout) contributes
// node-metadata.conf.json and pipes/ and systems/ only. A missing path and a
// directory without *.json files are errors.
func ConfigFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config %s: no such file or directory", p)
		}
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		var found []string
		node := isNodeLayout(p)
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != p && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if node && d.IsDir() && filepath.Dir(path) == filepath.Clean(p) && d.Name() != "pipes" && d.Name() != "systems" {
				return filepath.SkipDir // expected/, testdata/, variables/ of a node layout
			}
			if d.IsDir() || !strings.HasSuffix(d.Name(), ".json") {
				return nil
			}
			if node && filepath.Dir(path) == filepath.Clean(p) && d.Name() != nodeMetadataFile {
				return nil // test-env.json and other top-level files of a node layout
			}
			found = append(found, path)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("config %s: the directory holds no *.json files", p)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}

// nodeMetadataFile is the node metadata of a Sesam node layout.
const nodeMetadataFile = "node-metadata.conf.json"

// isNodeLayout reports whether dir is laid out as a Sesam node config (what
// sesam-py and `ferry expand --out` write): pipes/ or systems/
// sub-directories, or a node-metadata.conf.json. Only those are config
// there; test-env.json, expected/ and the like are not.
func isNodeLayout(dir string) bool {
	for _, name := range []string{"pipes", "systems"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.IsDir() {
			return true
		}
	}
	_, err := os.Stat(filepath.Join(dir, nodeMetadataFile))
	return err == nil
}

// LoadConfig reads systems and pipes from files and directories, resolving
// $ENV references. Problems are collected, not returned one at a time: the
// error is a *ConfigError listing all of them. A config without any system
// or pipe is an error (a wrong directory, an empty export).
func LoadConfig(paths []string, env Env) (*Config, error) {
	files, err := ConfigFiles(paths)
	if err != nil {
		return nil, err
	}
	cfg := &Config{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			cfg.Diagnostics = append(cfg.Diagnostics, Diagnostic{Severity: SevError, File: f, Message: err.Error()})
			continue
		}
		cfg.addFile(f, data, env)
	}
	cfg.checkIDs()
	if len(cfg.Systems)+len(cfg.Pipes) == 0 && len(cfg.Diagnostics.Errors()) == 0 {
		cfg.errorf(strings.Join(paths, ", "), "", "the config holds no systems or pipes")
	}
	if len(cfg.Diagnostics.Errors()) > 0 {
		return cfg, &ConfigError{Diagnostics: cfg.Diagnostics}
	}
	return cfg, nil
}

// ParseConfig is LoadConfig for one document already in memory (name is
// used as its file name in diagnostics).
func ParseConfig(name string, data []byte, env Env) (*Config, error) {
	cfg := &Config{}
	cfg.addFile(name, data, env)
	cfg.checkIDs()
	if len(cfg.Systems)+len(cfg.Pipes) == 0 && len(cfg.Diagnostics.Errors()) == 0 {
		cfg.errorf(name, "", "the config holds no systems or pipes")
	}
	if len(cfg.Diagnostics.Errors()) > 0 {
		return cfg, &ConfigError{Diagnostics: cfg.Diagnostics}
	}
	return cfg, nil
}

// AddComponents adds already-parsed components (e.g. an expanded
// connector) under a pseudo file name.
func (c *Config) AddComponents(file string, comps []any, env Env) {
	for i, v := range comps {
		c.addComponent(file, fmt.Sprintf("/%d", i), v, env)
	}
}

// Check re-runs the cross-component checks (unique ids) and returns a
// *ConfigError if there are errors.
func (c *Config) Check() error {
	c.checkIDs()
	if len(c.Diagnostics.Errors()) > 0 {
		return &ConfigError{Diagnostics: c.Diagnostics}
	}
	return nil
}

func (c *Config) errorf(file, ptr, format string, args ...any) {
	c.Diagnostics = append(c.Diagnostics, Diagnostic{Severity: SevError, File: file, Pointer: ptr, Message: fmt.Sprintf(format, args...)})
}

func (c *Config) addFile(file string, data []byte, env Env) {
	v, err := DecodeValue(data)
	if err != nil {
		var se *SyntaxError
		d := Diagnostic{Severity: SevError, File: file, Message: "malformed JSON: " + err.Error()}
		if errors.As(err, &se) {
			d.Line, d.Column = LineCol(data, se.Offset)
			d.Message = "malformed JSON: " + se.Msg
		}
		c.Diagnostics = append(c.Diagnostics, d)
		return
	}
	switch x := v.(type) {
	case []any:
		for i, item := range x {
			c.addComponent(file, fmt.Sprintf("/%d", i), item, env)
		}
	case map[string]any:
		c.addComponent(file, "", x, env)
	default:
		c.errorf(file, "", "a config file must hold a JSON object or an array of objects, not %s", TypeName(v))
	}
}

func (c *Config) addComponent(file, ptr string, v any, env Env) {
	m, ok := v.(map[string]any)
	if !ok {
		c.errorf(file, ptr, "a component must be a JSON object, not %s", TypeName(v))
		return
	}
	resolved, errs := ResolveEnv(m, env, ptr)
	rawID, _ := m["_id"].(string)
	rawType, _ := m["type"].(string)
	for _, e := range errs {
		d := Diagnostic{Severity: SevError, File: file, Pointer: e.Pointer, Message: e.Message}
		if rawID != "" {
			d.setComponent(&Component{ID: rawID, Type: rawType}, strings.TrimPrefix(e.Pointer, ptr), "")
		}
		c.Diagnostics = append(c.Diagnostics, d)
	}
	m = resolved.(map[string]any)
	id, _ := m["_id"].(string)
	typ, _ := m["type"].(string)
	switch {
	case m["_id"] == nil:
		c.errorf(file, ptr, "component has no _id")
		return
	case id == "":
		c.errorf(file, ptr+"/_id", "_id must be a non-empty string")
		return
	case strings.Contains(id, "/"):
		c.errorf(file, ptr+"/_id", "_id %q must not contain '/'", id)
		return
	}
	comp := &Component{ID: id, Type: typ, File: file, Pointer: ptr, Raw: m}
	switch {
	case typ == "pipe":
		c.Pipes = append(c.Pipes, comp)
	case strings.HasPrefix(typ, "system:"):
		c.Systems = append(c.Systems, comp)
	case typ == "metadata" || typ == "":
		if typ == "" {
			c.errorf(file, ptr+"/type", "component %q has no type (want \"pipe\" or \"system:<kind>\")", id)
		}
	default:
		c.errorf(file, ptr+"/type", "component %q has unknown type %q (want \"pipe\" or \"system:<kind>\")", id, typ)
	}
}

func (c *Config) checkIDs() {
	// Drop earlier duplicate diagnostics so Check can run repeatedly.
	kept := c.Diagnostics[:0]
	for _, d := range c.Diagnostics {
		if !strings.HasPrefix(d.Message, "duplicate _id ") {
			kept = append(kept, d)
		}
	}
	c.Diagnostics = kept
	seen := map[string]*Component{}
	for _, list := range [][]*Component{c.Systems, c.Pipes} {
		for _, comp := range list {
			if prev, dup := seen[comp.ID]; dup {
				c.errorf(comp.File, comp.Pointer+"/_id", "duplicate _id %q (also in %s%s)", comp.ID, prev.File, prev.Pointer)
				continue
			}
			seen[comp.ID] = comp
		}
	}
}

// EnvRefError is an unresolvable $ENV reference.
type EnvRefError struct {
	Pointer string
	Message string
}

var envRef = regexp.MustCompile(`\$ENV\(([^()]*)\)`)

// ResolveEnv returns a copy of v with every $ENV(name) in strings replaced.
// A string that is exactly "$ENV(name)" takes the variable's value as a
// string. Unknown names are reported with the pointer of the string.
func ResolveEnv(v any, env Env, ptr string) (any, []EnvRefError) {
	var errs []EnvRefError
	var walk func(v any, ptr string) any
	walk = func(v any, ptr string) any {
		switch x := v.(type) {
		case string:
			if !strings.Contains(x, "$ENV(") {
				return x
			}
			return envRef.ReplaceAllStringFunc(x, func(ref string) string {
				name := ref[5 : len(ref)-1]
				val, ok := env(name)
				if !ok {
					errs = append(errs, EnvRefError{Pointer: ptr, Message: fmt.Sprintf("unknown environment variable %q in $ENV(%s) (set it in the environment or the --env file)", name, name)})
					return ref
				}
				return val
			})
		case map[string]any:
			out := make(map[string]any, len(x))
			for k, e := range x {
				out[k] = walk(e, ptr+"/"+escapePointer(k))
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = walk(e, fmt.Sprintf("%s/%d", ptr, i))
			}
			return out
		default:
			return v
		}
	}
	return walk(v, ptr), errs
}

func escapePointer(s string) string {
	s = strings.ReplaceAll(s, "~", "~0")
	return strings.ReplaceAll(s, "/", "~1")
}
