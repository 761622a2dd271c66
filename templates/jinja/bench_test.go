package jinja

import (
	"encoding/json"
	"testing"
)

func BenchmarkRenderConstant(b *testing.B) {
	tpl := MustCompile("crm/v3/objects/companies")
	ctx := Context{"id": json.Number("1")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.Render(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderIdExpression(b *testing.B) {
	tpl := MustCompile("{{ id }}")
	ctx := Context{"id": json.Number("12345"), "name": "x", "lastChanged": "2024-01-01"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.Render(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderPaging(b *testing.B) {
	tpl := MustCompile(pogoPage)
	ctx := Context{
		"previous_request_headers": map[string]any{"X-Sesam-Page": "7"},
		"headers":                  map[string]any{"X-Sesam-Page": "8"},
		"properties":               map[string]any{"top": "100"},
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := tpl.Render(ctx)
		if err != nil || got != "8" {
			b.Fatal(got, err)
		}
	}
}

func BenchmarkRenderPayloadToJSON(b *testing.B) {
	tpl := MustCompile(`{{ entity.payload2 | tojson }}sesam:markjson`)
	var entity map[string]any
	_ = json.Unmarshal([]byte(`{"payload2": {"name": "Acme", "amount": 1.10, "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}}`), &entity)
	ctx := Context{"entity": entity}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := RenderValue(ctx, tpl); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompilePaging(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(pogoPage); err != nil {
			b.Fatal(err)
		}
	}
}
