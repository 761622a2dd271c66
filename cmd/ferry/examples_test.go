package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/pipetest"
)

// exampleTests finds the tests of every example under root: directories
// named "test" whose parent is a connector directory (tested as such) or
// holds the config in "config" (a directory or config.json).
func exampleTests(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{} // test dir -> path given to ferry test
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || d.Name() != pipetest.DirName {
			return err
		}
		parent := filepath.Dir(p)
		switch {
		case fileExists(filepath.Join(parent, "manifest.json")):
			out[p] = parent
		case fileExists(filepath.Join(parent, "config")):
			out[p] = filepath.Join(parent, "config")
		case fileExists(filepath.Join(parent, "config.json")):
			out[p] = filepath.Join(parent, "config.json")
		default:
			t.Errorf("%s: a test directory beside neither a connector (manifest.json) nor a config (config/ or config.json)", p)
		}
		return filepath.SkipDir
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExamples runs `ferry test` on every example and connector under
// examples/ that has tests, and checks that every example has some: they
// are the regression tests of the configs and connectors users copy.
func TestExamples(t *testing.T) {
	const root = "../../examples"
	tests := exampleTests(t, root)
	// Every example directory and every connector ships with tests.
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dirs := []string{filepath.Join(root, e.Name())}
		if e.Name() == "connectors" {
			dirs, _ = filepath.Glob(filepath.Join(root, e.Name(), "*"))
		}
		for _, d := range dirs {
			if _, ok := tests[filepath.Join(d, pipetest.DirName)]; !ok {
				t.Errorf("%s has no tests (%s/test: see docs/testing.md)", d, d)
			}
		}
	}
	for dir, path := range tests {
		t.Run(strings.TrimPrefix(filepath.ToSlash(dir), root+"/"), func(t *testing.T) {
			code, out, errOut := runCLI(t, "test", path)
			if code != exitOK || !strings.Contains(out, "PASS:") {
				t.Errorf("ferry test %s = %d\n%s%s\n(after a deliberate change, update the expected output with: go run ./cmd/ferry test %s --update)",
					path, code, out, errOut, strings.TrimPrefix(path, "../../"))
			}
		})
	}
}
