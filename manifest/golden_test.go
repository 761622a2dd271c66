package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/templates"
)

// sharedDir is /work/shared relative to the module root (../shared).
func sharedDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "connectors")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared connector corpus not found at %s (it lives next to the module root); the copies in testdata/ still run", dir)
	}
	return dir
}

// goldenCase is one connector (or edge case) with its expected result.
type goldenCase struct {
	name     string
	input    string // connector directory
	expanded string // expanded.json, or ""
	errTxt   string // error.txt, or ""
}

func collectCases(t *testing.T, root string) []goldenCase {
	t.Helper()
	var cases []goldenCase
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if e.Name() == "_edgecases" {
			sub, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sub {
				if !s.IsDir() {
					continue
				}
				c := goldenCase{name: "_edgecases/" + s.Name(), input: filepath.Join(dir, s.Name(), "input")}
				if p := filepath.Join(dir, s.Name(), "expanded.json"); exists(p) {
					c.expanded = p
				}
				if p := filepath.Join(dir, s.Name(), "error.txt"); exists(p) {
					c.errTxt = p
				}
				cases = append(cases, c)
			}
			continue
		}
		if !exists(filepath.Join(dir, "manifest.json")) {
			continue
		}
		cases = append(cases, goldenCase{name: e.Name(), input: dir, expanded: filepath.Join(dir, "expanded.json")})
	}
	return cases
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestGoldenShared(t *testing.T) {
	runGolden(t, sharedDir(t))
}

func TestGoldenTestdata(t *testing.T) {
	runGolden(t, "testdata")
}

func runGolden(t *testing.T, root string) {
	cases := collectCases(t, root)
	if len(cases) == 0 {
		t.Fatalf("no connectors found under %s", root)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(c.input)
			var comps []Component
			if err == nil {
				comps, err = m.Expand(Options{System: Placeholder})
			}
			if c.errTxt != "" {
				want, _ := os.ReadFile(c.errTxt)
				if err == nil {
					t.Fatalf("expansion succeeded; sesam-py fails with %s", bytes.TrimSpace(want))
				}
				var te *templates.Error
				if !errors.As(err, &te) || te.File == "" {
					t.Fatalf("error %q does not name the template file", err)
				}
				t.Logf("sesam-py: %s\nferry:    %v", bytes.TrimSpace(want), err)
				// Where sesam-py reports a JSON position, Ferry must report the same one.
				if m := charRe.FindSubmatch(want); m != nil && !strings.Contains(err.Error(), "(char "+string(m[1])+")") {
					t.Errorf("error %q does not report the JSON error at char %s as sesam-py does", err, m[1])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.expanded == "" {
				t.Fatal("case has neither expanded.json nor error.txt")
			}
			compareExpanded(t, c.expanded, comps)
		})
	}
}

func compareExpanded(t *testing.T, file string, comps []Component) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var want []any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(comps) != len(want) {
		ids := make([]string, len(comps))
		for i, c := range comps {
			ids[i] = c.ID
		}
		t.Errorf("got %d components, want %d; got ids %v", len(comps), len(want), ids)
	}
	for i := 0; i < len(comps) && i < len(want); i++ {
		got, err := comps[i].Decode()
		if err != nil {
			t.Fatal(err)
		}
		if diff := jsonDiff("", got, want[i]); diff != "" {
			t.Errorf("component %d (%s from %s): %s", i, comps[i].ID, comps[i].Template, diff)
		}
	}
}

// jsonDiff compares decoded JSON values (numbers by value, object key order
// ignored) and describes the first difference.
func jsonDiff(path string, got, want any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: got %T, want object", path, got)
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			gv, gok := g[k]
			wv, wok := w[k]
			if gok != wok {
				return fmt.Sprintf("%s/%s: present in got=%v, in want=%v", path, k, gok, wok)
			}
			if d := jsonDiff(path+"/"+k, gv, wv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: got %v, want %v", path, got, want)
		}
		for i := range w {
			if d := jsonDiff(fmt.Sprintf("%s/%d", path, i), g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	case json.Number:
		g, ok := got.(json.Number)
		if !ok {
			return fmt.Sprintf("%s: got %v (%T), want number %s", path, got, got, w)
		}
		if g == w {
			return "" // same text; big.Rat cannot even hold 1E10000000
		}
		a, aok := new(big.Rat).SetString(string(g))
		b, bok := new(big.Rat).SetString(string(w))
		if !aok || !bok || a.Cmp(b) != 0 {
			return fmt.Sprintf("%s: got %s, want %s", path, g, w)
		}
		return ""
	}
	if got != want {
		return fmt.Sprintf("%s: got %#v, want %#v", path, got, want)
	}
	return ""
}

var charRe = regexp.MustCompile(`\(char (\d+)\)`)
