package manifest

import (
	"path/filepath"
	"testing"
)

// BenchmarkExpandHubspot expands the whole hubspot connector (38
// datatypes, 143 components): "warm" re-uses the loaded manifest (templates
// compiled once), "cold" includes Load (schema validation) and compiling
// every template.
func BenchmarkExpandHubspot(b *testing.B) {
	dir := filepath.Join(sharedDir(b), "hubspot-connector")
	b.Run("warm", func(b *testing.B) {
		m, err := Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			comps, err := m.Expand(Options{})
			if err != nil {
				b.Fatal(err)
			}
			if len(comps) != 143 {
				b.Fatalf("%d components", len(comps))
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := Load(dir)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Expand(Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
