package dtl

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expected outputs of testdata/golden")

// TestGolden runs real connector rules from testdata/golden/*.json
// ({"rules", "source"}) and compares with the "<name>.out.json" golden file.
// Regenerate with `go test -run TestGolden -update` and review the diff.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.json")
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".out.json") {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c := decodeJSON(t, data).(map[string]any)
			p, err := Compile(c["rules"].(map[string]any), DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Apply(context.Background(), c["source"].(map[string]any))
			if err != nil {
				t.Fatal(err)
			}
			got := canonicalJSON(toAny(out)) + "\n"
			golden := strings.TrimSuffix(f, ".json") + ".out.json"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
	if n < 3 {
		t.Fatalf("expected golden cases, found %d", n)
	}
}
