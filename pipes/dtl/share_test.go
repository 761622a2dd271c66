package dtl

import (
	"context"
	"encoding/json"
	"os"
	"sort"
	"testing"
)

// fakeHopper serves Lookup from in-memory datasets with Sesam index
// semantics: list values match by element.
type fakeHopper struct {
	datasets map[string][]map[string]any
	calls    int
}

func (f *fakeHopper) Lookup(_ context.Context, dataset string, path []string, values []any) ([]map[string]any, error) {
	f.calls++
	var out []map[string]any
	for _, ent := range f.datasets[dataset] {
		for _, have := range traverse([]any{ent}, path) {
			if containsValue(values, have) {
				out = append(out, ent)
				break
			}
		}
	}
	return out, nil
}

func compileFile(t *testing.T, name string, hops Hopper) *Program {
	t.Helper()
	data, err := os.ReadFile("testdata/rules/" + name)
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Hops = hops
	p, err := Compile(decodeJSON(t, data).(map[string]any), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func applyJSON(t *testing.T, p *Program, src string) []any {
	t.Helper()
	out, err := p.Apply(context.Background(), decodeJSON(t, []byte(src)).(map[string]any))
	if err != nil {
		t.Fatal(err)
	}
	return toAny(out)
}

// TestShareClassify runs step 1 of transform-share-rest (inlined in the
// superoffice quoteline template) through every branch of SPEC f.
func TestShareClassify(t *testing.T) {
	hop := &fakeHopper{datasets: map[string][]map[string]any{
		"xxxxxx-quoteline-share": {
			{"_id": "crm:7", "$generated_id": 70},
			{"_id": "crm:8", "$generated_id": nil},
		},
	}}
	p := compileFile(t, "superoffice-quoteline-share-classify.json", hop)
	cases := []struct{ name, src, want string }{
		{"has PK => lookup", `{"_id": "a", "QuoteLineId": 5, "Name": "x", "$origin": "~:crm:1"}`,
			`[{"_id":"a","QuoteLineId":5,"$origin":"~:crm:1","$operation":"lookup","$source":{"_id":"a","QuoteLineId":5,"Name":"x","$origin":"~:crm:1"}}]`},
		{"has PK, deleted => delete", `{"_id": "a", "_deleted": true, "QuoteLineId": 5}`,
			`[{"_id":"a","_deleted":true,"QuoteLineId":5,"$operation":"delete","$source":{"_id":"a","_deleted":true,"QuoteLineId":5}}]`},
		{"replaced and deleted => discard-replaced", `{"_id": "a", "_deleted": true, "$replaced": true, "QuoteLineId": 5}`,
			`[{"_id":"a","_deleted":true,"QuoteLineId":5,"$replaced":true,"$operation":"discard-replaced","$source":{"_id":"a","_deleted":true,"$replaced":true,"QuoteLineId":5}}]`},
		{"no PK, deleted => discard-delete-non-existent", `{"_id": "a", "_deleted": true}`,
			`[{"_id":"a","_deleted":true,"$operation":"discard-delete-non-existent","$source":{"_id":"a","_deleted":true}}]`},
		{"no PK => insert with stripped payload", `{"_id": "crm:9", "_updated": 4, "Name": "x", "Qty": 1.50, "$origin": "~:crm:9", "$ids": ["~:crm:9"]}`,
			`[{"_id":"crm:9","$origin":"~:crm:9","$operation":"insert","_payload":{"Name":"x","Qty":1.50},"payload":{"Name":"x","Qty":1.50},"$source":{"_id":"crm:9","_updated":4,"Name":"x","Qty":1.50,"$origin":"~:crm:9","$ids":["~:crm:9"]}}]`},
		{"no PK, explicit $payload", `{"_id": "crm:9", "Name": "x", "$payload": {"Other": 1}}`,
			`[{"_id":"crm:9","$operation":"insert","_payload":{"Other":1},"payload":{"Other":1},"$source":{"_id":"crm:9","Name":"x","$payload":{"Other":1}}}]`},
		{"no PK, already inserted (hop via $ids)", `{"_id": "x", "Name": "x", "$ids": ["~:crm:7"]}`,
			`[{"_id":"x","$operation":"discard-already-inserted","$source":{"_id":"x","Name":"x","$ids":["~:crm:7"]}}]`},
		{"no PK, $ids defaults to NI(_id)", `{"_id": "crm:7", "Name": "x"}`,
			`[{"_id":"crm:7","$operation":"discard-already-inserted","$source":{"_id":"crm:7","Name":"x"}}]`},
		{"no PK, share hit without generated id => insert", `{"_id": "crm:8", "Name": "x"}`,
			`[{"_id":"crm:8","$operation":"insert","_payload":{"Name":"x"},"payload":{"Name":"x"},"$source":{"_id":"crm:8","Name":"x"}}]`},
		{"NI never equals plain id", `{"_id": "x", "Name": "x", "$ids": ["crm:7"]}`,
			`[{"_id":"x","$operation":"insert","_payload":{"Name":"x"},"payload":{"Name":"x"},"$source":{"_id":"x","Name":"x","$ids":["crm:7"]}}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertJSON(t, applyJSON(t, p, tc.src), decodeJSON(t, []byte(tc.want)))
		})
	}
}

// TestShareCompare runs step 3 (optimistic-locking comparison).
func TestShareCompare(t *testing.T) {
	p := compileFile(t, "superoffice-quoteline-share-compare.json", nil)
	const based = `"$based_on": {"Name": "x", "Qty": 1, "Nested": {"b": [2, 1]}}`
	cases := []struct{ name, src, wantOp string }{
		{"unchanged", `{"_id": "a", "QuoteLineId": 5, "$operation": "lookup", "response_status": 200,
			"response_body": [{"QuoteLineId": 5, "Name": "x", "Qty": 1.0, "Nested": {"b": [1, 2], "extra": 1}, "Server": "s"}],
			"$source": {"_id": "a", "QuoteLineId": 5, "Name": "x", "Qty": 1, "Nested": {"b": [1, 2]}, ` + based + `}}`, "discard-entity-not-changed"},
		{"changed here => update", `{"_id": "a", "QuoteLineId": 5, "$operation": "lookup", "response_status": 200,
			"response_body": [{"QuoteLineId": 5, "Name": "x", "Qty": 1, "Nested": {"b": [1, 2]}}],
			"$source": {"_id": "a", "QuoteLineId": 5, "Name": "y", "Qty": 1, "Nested": {"b": [1, 2]}, ` + based + `}}`, "update"},
		{"changed in system => lost write", `{"_id": "a", "QuoteLineId": 5, "$operation": "lookup", "response_status": 200,
			"response_body": [{"QuoteLineId": 5, "Name": "z", "Qty": 1, "Nested": {"b": [1, 2]}}],
			"$source": {"_id": "a", "QuoteLineId": 5, "Name": "y", "Qty": 1, "Nested": {"b": [1, 2]}, ` + based + `}}`, "discard-modified-in-system"},
		{"lookup failed passes", `{"_id": "a", "$operation": "lookup", "response_status": 404, "$source": {}}`, "lookup"},
		{"insert passes", `{"_id": "a", "$operation": "insert", "$origin": "~:crm:1", "$source": {}}`, "insert"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := applyJSON(t, p, tc.src)
			if len(out) != 1 {
				t.Fatalf("got %d outputs", len(out))
			}
			got := out[0].(map[string]any)
			if got["$operation"] != tc.wantOp {
				t.Errorf("$operation = %v, want %s (entity %s)", got["$operation"], tc.wantOp, canonicalJSON(got))
			}
			if tc.wantOp == "update" {
				assertJSON(t, got["payload"], decodeJSON(t, []byte(`{"QuoteLineId":5,"Name":"y","Qty":1,"Nested":{"b":[1,2]}}`)))
			}
		})
	}
	// insert without $origin must fail.
	_, err := p.Apply(context.Background(), decodeJSON(t, []byte(`{"_id": "a", "$operation": "insert", "$source": {}}`)).(map[string]any))
	if err == nil {
		t.Fatal("insert without $origin: no error")
	}
}

// TestShareRecord runs step 7 (share-dataset record) including the
// previous-record hop by _id.
func TestShareRecord(t *testing.T) {
	hop := &fakeHopper{datasets: map[string][]map[string]any{
		"xxxxxx-quoteline-share": {{"_id": "a", "$generated_id": 70, "$origin": "~:crm:1", "$success": true}},
	}}
	p := compileFile(t, "superoffice-quoteline-share-record.json", hop)
	out := applyJSON(t, p, `{"_id": "b", "$operation": "insert", "response_status": 201, "response_body": {"QuoteLineId": 99}, "$source": {"x": 1}}`)
	got := out[0].(map[string]any)
	if got["$generated_id"] == nil || canonicalJSON(got["$generated_id"]) != "99" || got["$success"] != true || got["$last_operation"] != "insert" {
		t.Errorf("insert record: %s", canonicalJSON(got))
	}
	out = applyJSON(t, p, `{"_id": "a", "_deleted": true, "$operation": "discard-replaced", "$replaced": true, "$source": {}}`)
	got = out[0].(map[string]any)
	if canonicalJSON(got["$generated_id"]) != "70" || got["_deleted"] != false || got["$origin"] != "~:crm:1" || got["$previous_success"] != true {
		t.Errorf("discard-replaced record: %s", canonicalJSON(got))
	}
	out = applyJSON(t, p, `{"_id": "c", "$operation": "update", "response_status": 500, "$source": {}}`)
	got = out[0].(map[string]any)
	if got["$error"] != "error-update" || got["$success"] != false {
		t.Errorf("failed update record: %s", canonicalJSON(got))
	}
	if _, err := p.Apply(context.Background(), decodeJSON(t, []byte(`{"_id": "d", "$operation": "insert", "response_status": 200, "response_body": {}}`)).(map[string]any)); err == nil {
		t.Error("insert without generated key: no error")
	}
}

// TestHubspotOriginHop runs the composite-key origin hop
// (["eq", ["tuples", "_S.id", "_S.toObjectId"], ["list", "st.$generated_id"]]).
func TestHubspotOriginHop(t *testing.T) {
	hop := &fakeHopper{datasets: map[string][]map[string]any{
		"xxxxxx-companycompanyassociation-share": {
			{"_id": "s1", "$generated_id": []any{"10", jsonNum("21")}, "$origin": "~:crm:wrong"},
			{"_id": "s2", "$generated_id": []any{"10", jsonNum("20")}, "$origin": "~:crm:1"},
		},
	}}
	p := compileFile(t, "hubspot-association-origin-hop.json", hop)
	out := applyJSON(t, p, `{"_id": "10-20", "id": "10", "toObjectId": 20}`)
	got := out[0].(map[string]any)
	if got["$origin"] != "~:crm:1" {
		t.Errorf("$origin = %v (entity %s)", got["$origin"], canonicalJSON(got))
	}
	out = applyJSON(t, p, `{"_id": "10-22", "id": "10", "toObjectId": 22}`)
	if _, has := out[0].(map[string]any)["$origin"]; has {
		t.Errorf("unexpected $origin: %s", canonicalJSON(out[0]))
	}
}

// TestHubspotAssociationChildren runs create-child with _P.
func TestHubspotAssociationChildren(t *testing.T) {
	p := compileFile(t, "hubspot-association-children.json", nil)
	out := applyJSON(t, p, `{"_id": "10", "id": "10", "response": [{"toObjectId": 20, "associationTypes": [
		{"category": "HUBSPOT_DEFINED", "typeId": 13, "label": null}, {"category": "USER_DEFINED", "typeId": 7, "label": "Boss"}]}]}`)
	kids := out[0].(map[string]any)["$children"].([]any)
	if len(kids) != 1 {
		t.Fatalf("children: %s", canonicalJSON(out))
	}
	want := `{"_id":"10-20","id":"10","toObjectId":20,"associationTypes":[{"category":"HUBSPOT_DEFINED","typeId":13,"label":null},{"category":"USER_DEFINED","typeId":7,"label":"Boss"}],"sesam_simpleAssociationTypes":"USER_DEFINED-7"}`
	assertJSON(t, kids[0], decodeJSON(t, []byte(want)))
}

func TestHopperLookupValues(t *testing.T) {
	var seen [][]any
	rec := hopperFunc(func(_ context.Context, ds string, path []string, values []any) ([]map[string]any, error) {
		seen = append(seen, values)
		return nil, nil
	})
	opts := DefaultOptions()
	opts.Hops = rec
	p, err := Compile(decodeJSON(t, []byte(`{"default": [["add", "a", ["hops", {"datasets": ["ds x"], "where": [["eq", "_S.ref", "x.id"]]}]]]}`)).(map[string]any), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{`{"_id": "1"}`, `{"_id": "1", "ref": null}`, `{"_id": "1", "ref": ["a", null, "a", "b"]}`} {
		if _, err := p.Apply(context.Background(), decodeJSON(t, []byte(src)).(map[string]any)); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 1 {
		t.Fatalf("Lookup called %d times, want 1 (never for nil)", len(seen))
	}
	got := []string{}
	for _, v := range seen[0] {
		got = append(got, v.(string))
	}
	sort.Strings(got)
	if canonicalJSON(toAnyStrings(got)) != `["a","b"]` {
		t.Errorf("values = %v", got)
	}
}

type hopperFunc func(ctx context.Context, dataset string, path []string, values []any) ([]map[string]any, error)

func (f hopperFunc) Lookup(ctx context.Context, dataset string, path []string, values []any) ([]map[string]any, error) {
	return f(ctx, dataset, path, values)
}

func toAnyStrings(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func jsonNum(s string) json.Number { return json.Number(s) }
