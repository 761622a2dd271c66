package pipetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ferrydata/ferry/engine"
)

// Names in a test directory.
const (
	// SpecFile is the test directory's optional settings file.
	SpecFile = "test.json"
	// TestdataDir holds testdata/<pipe>.json: the entities an input pipe
	// reads instead of its source, or the records a share pipe's lookups
	// find in its system.
	TestdataDir = "testdata"
	// ExpectedDir holds expected/<pipe>.json: a pipe's expected output.
	ExpectedDir = "expected"
	// DirName is the default test directory: beside a config, inside a
	// connector directory.
	DirName = "test"
)

// DefaultConnected is the connect time of a test's connector instances
// (the connected_ts variable) unless the spec sets one: fixed, so that
// expansions and outputs do not change from run to run.
var DefaultConnected = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Spec is a test directory's test.json. Every key is optional.
type Spec struct {
	// Description says what the test is about.
	Description string `json:"description,omitempty"`
	// Env holds the $ENV values of the config and of the connector
	// instances (after their parameters). The process environment is not
	// used: a test reads the same values everywhere. Values are strings,
	// numbers or booleans.
	Env map[string]any `json:"env,omitempty"`
	// Connectors are connector instances loaded with the config, as
	// `ferry connect` would record them. When the tested path is a
	// connector directory, an instance without "dir" is that connector;
	// with no instances at all it is connected once with the defaults.
	Connectors []Instance `json:"connectors,omitempty"`
	// Ignore lists property paths left out of every pipe's output when
	// comparing (see Pipe.Ignore).
	Ignore []string `json:"ignore,omitempty"`
	// IgnoreDeletes leaves deleted entities out of every comparison.
	IgnoreDeletes bool `json:"ignore_deletes,omitempty"`
	// Pipes holds per-pipe settings by pipe _id.
	Pipes map[string]Pipe `json:"pipes,omitempty"`
}

// Instance is a connector instance of a test (the fields of `ferry
// connect`).
type Instance struct {
	// Dir is the connector directory, relative to the test directory.
	Dir string `json:"dir,omitempty"`
	// System is the instance's system id (default: the connector's name,
	// its directory name without "-connector").
	System string `json:"system,omitempty"`
	// Parameters are the instance's parameters ($ENV values and injected
	// variables such as base_url).
	Parameters map[string]string `json:"parameters,omitempty"`
	// Datatypes enabled (default all), Share and Directions as the
	// --share and --direction flags of connect.
	Datatypes  []string          `json:"datatypes,omitempty"`
	Share      []string          `json:"share,omitempty"`
	Directions map[string]string `json:"directions,omitempty"`
	// History is connect's --history (default all).
	History string `json:"history,omitempty"`
	// Connected is the connect time, RFC 3339 (default DefaultConnected).
	Connected string `json:"connected,omitempty"`
}

// Pipe holds one pipe's test settings.
type Pipe struct {
	// Ignore lists property paths left out of the pipe's output when
	// comparing, in addition to the spec's: dotted names ("address.zip"),
	// "*" matching any one name ("lines.*.id" or "*.modified"), "\." for
	// a dot inside a name. Lists are transparent: "lines.amount" reaches
	// into every element of the list "lines".
	Ignore []string `json:"ignore,omitempty"`
	// IgnoreDeletes leaves deleted entities out of the comparison.
	IgnoreDeletes *bool `json:"ignore_deletes,omitempty"`
	// Skip: the pipe does not run and is not compared (a pipe whose
	// transforms call a system, for example).
	Skip bool `json:"skip,omitempty"`
	// Compare false runs the pipe but never compares (or writes) its
	// output.
	Compare *bool `json:"compare,omitempty"`
}

// LoadSpec reads dir/test.json; a missing file is an empty spec. Unknown
// keys are errors (a typo would otherwise silently change the test).
func LoadSpec(dir string) (*Spec, error) {
	path := filepath.Join(dir, SpecFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Spec{}, nil
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := engine.LineCol(data, int(se.Offset))
			return nil, fmt.Errorf("%s:%d:%d: %v", path, line, col, err)
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return &s, nil
}

// env returns the spec's $ENV values as text, with over on top.
func (s *Spec) env(path string, over map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range sortedKeys(s.Env) {
		switch v := s.Env[k].(type) {
		case string:
			out[k] = v
		case json.Number:
			out[k] = v.String()
		case bool:
			out[k] = fmt.Sprint(v)
		default:
			return nil, fmt.Errorf("%s: env %q must be a string, number or boolean", path, k)
		}
	}
	for k, v := range over {
		out[k] = v
	}
	return out, nil
}

// pipe returns the settings of pipe id (zero when none).
func (s *Spec) pipe(id string) Pipe { return s.Pipes[id] }

// ignoreDeletes reports whether deleted entities of pipe id are left out.
func (s *Spec) ignoreDeletes(id string) bool {
	if p := s.Pipes[id].IgnoreDeletes; p != nil {
		return *p
	}
	return s.IgnoreDeletes
}

// compared reports whether pipe id's output is compared.
func (s *Spec) compared(id string) bool {
	p := s.Pipes[id]
	return !p.Skip && (p.Compare == nil || *p.Compare)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonFiles lists the <name>.json files of dir by name (without .json);
// a missing dir has none.
func jsonFiles(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		out[strings.TrimSuffix(name, ".json")] = filepath.Join(dir, name)
	}
	return out, nil
}

// readEntities reads a JSON array of objects (testdata and expected
// files), numbers kept as written.
func readEntities(path string) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	v, err := engine.DecodeValue(data)
	if err != nil {
		var se *engine.SyntaxError
		if errors.As(err, &se) {
			line, col := engine.LineCol(data, se.Offset)
			return nil, fmt.Errorf("%s:%d:%d: malformed JSON: %s", path, line, col, se.Msg)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a JSON array of objects, not %s", path, engine.TypeName(v))
	}
	out := make([]map[string]any, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: item %d is %s, not an object", path, i, engine.TypeName(item))
		}
		out = append(out, m)
	}
	return out, nil
}
