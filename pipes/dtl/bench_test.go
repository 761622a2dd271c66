package dtl

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

func benchEntity() map[string]any {
	src := map[string]any{"_id": "1"}
	for i := 0; i < 10; i++ {
		src[fmt.Sprintf("f%d", i)] = json.Number(fmt.Sprint(i))
	}
	return src
}

// BenchmarkApplySimple: 10 copies and 10 adds per entity.
func BenchmarkApplySimple(b *testing.B) {
	var body []any
	for i := 0; i < 10; i++ {
		body = append(body, []any{"copy", fmt.Sprintf("f%d", i)})
		body = append(body, []any{"add", fmt.Sprintf("g%d", i), fmt.Sprintf("_S.f%d", i)})
	}
	p, err := Compile(map[string]any{"default": body}, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	src := benchEntity()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Apply(ctx, src); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyShareClassify runs the share-template classify step.
func BenchmarkApplyShareClassify(b *testing.B) {
	p := compileFile(&testing.T{}, "superoffice-quoteline-share-classify.json", nil)
	src := map[string]any{"_id": "a", "QuoteLineId": json.Number("5"), "Name": "x", "$origin": "~:crm:1"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Apply(ctx, src); err != nil {
			b.Fatal(err)
		}
	}
}

// TestProgramConcurrent checks the goroutine-safety promise (run with -race).
func TestProgramConcurrent(t *testing.T) {
	p := compileFile(t, "superoffice-quoteline-share-compare.json", nil)
	src := decodeJSON(t, []byte(`{"_id": "a", "QuoteLineId": 5, "$operation": "lookup", "response_status": 200,
		"response_body": [{"QuoteLineId": 5, "Name": "x"}], "$source": {"_id": "a", "QuoteLineId": 5, "Name": "y", "$based_on": {"Name": "x"}}}`)).(map[string]any)
	want := ""
	var wg sync.WaitGroup
	results := make([]string, 8)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				out, err := p.Apply(context.Background(), src)
				if err != nil {
					t.Error(err)
					return
				}
				results[g] = canonicalJSON(toAny(out))
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if want == "" {
			want = r
		}
		if r != want {
			t.Errorf("goroutines disagree:\n%s\n%s", r, want)
		}
	}
}
