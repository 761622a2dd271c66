// Package corpus locates the public Sesam connector corpus (the shared
// conformance corpus next to the repository) for tests and fuzz seeds. The
// corpus is not part of the repository: every user must cope with Dir
// returning "".
package corpus

import (
	"os"
	"path/filepath"
)

// Env names the variable that points at the corpus directory.
const Env = "FERRY_CONNECTORS"

// Dir returns the connector corpus directory: $FERRY_CONNECTORS, else
// ../shared/connectors next to the module root (found from the working
// directory upwards), else /work/shared/connectors; "" when none exists.
func Dir() string {
	if d := os.Getenv(Env); d != "" {
		if isDir(d) {
			return d
		}
		return ""
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				if c := filepath.Join(d, "..", "shared", "connectors"); isDir(c) {
					return c
				}
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if isDir("/work/shared/connectors") {
		return "/work/shared/connectors"
	}
	return ""
}

// Glob returns the corpus files matching pattern (relative to Dir, e.g.
// "*/templates/*.json"); nil without a corpus.
func Glob(pattern string) []string {
	d := Dir()
	if d == "" {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(d, pattern))
	return files
}

// ReadAll returns the contents of the files matching pattern.
func ReadAll(pattern string) [][]byte {
	var out [][]byte
	for _, f := range Glob(pattern) {
		if data, err := os.ReadFile(f); err == nil {
			out = append(out, data)
		}
	}
	return out
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
