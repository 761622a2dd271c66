package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// connectorsDir holds the shared Sesam connector corpus (read-only).
const connectorsDir = "/work/shared/connectors"

// runtimeStrings returns every string (map keys included) in v that
// contains "{{" or "{%".
func runtimeStrings(v any, out map[string]bool) {
	switch x := v.(type) {
	case string:
		if strings.Contains(x, "{{") || strings.Contains(x, "{%") {
			out[x] = true
		}
	case []any:
		for _, e := range x {
			runtimeStrings(e, out)
		}
	case map[string]any:
		for k, e := range x {
			runtimeStrings(k, out)
			runtimeStrings(e, out)
		}
	}
}

// sampleContext is a generic REST context with the names the corpus
// reads. Some item fields (personUpdatedDate, Id, …) are left out on
// purpose so that the strict-undefined path is exercised too.
func sampleContext(t testing.TB) Context {
	return Context(obj(t, `{
		"entity": {"id": 101, "typeId": 3, "toObjectId": 202, "QuoteId": 1, "QuoteAlternativeId": 2, "QuoteLineId": 3,
		           "QuoteVersionId": 4, "quote/quoteId": 5, "ContactId": 6,
		           "payload": {"ERPProductKey": "P-1", "QuoteAlternativeId": 2}, "payload2": {"name": "x", "amount": 1.10}},
		"properties": {"base_url": "Contact", "lookup_id": "ContactId", "list_id": "id", "datatype": "customer", "top": "100",
		               "primary_key": "ContactId", "updated_param": "updated", "ordering": "name", "iso2Letter": "NO", "id": 7,
		               "identificationNumber": "123", "debtorAccountNumber": "42"},
		"body": {"paging": {"next": {"link": "https://api/x?after=1", "after": "2"}}, "nextPageUrl": null, "from": 0, "count": 100},
		"headers": {"X-Sesam-Page": "2"},
		"previous_request_headers": {"X-Sesam-Page": "1"},
		"since": "2024-01-01T00:00:00Z", "page": 1, "url": "https://api/x",
		"id": 1, "code": "NOK", "category": "HUBSPOT_DEFINED", "typeId": 1, "PrimaryKey": 9, "lastChanged": "2024-02-03T04:05:06Z",
		"updatedDate": "2024-01-01", "node": {"id": "n1"}, "portalId": 77, "addressType": "home", "description": "d",
		"debtorAccountNumber": "42", "internalId": "i", "lastChange": "2024-01-01", "municipalityId": "0301", "officialCode": "0301"
	}`).(map[string]any))
}

// TestCorpusCompileAndRender compiles every runtime template found in the
// expanded connector configs (or, without the shared corpus, in the
// testdata fixture) and renders it against sampleContext. Every template
// must compile; a render may fail only with the strict-undefined error.
func TestCorpusCompileAndRender(t *testing.T) {
	found := map[string]bool{}
	source := "testdata/corpus_expressions.json"
	files, _ := filepath.Glob(filepath.Join(connectorsDir, "*", "expanded.json"))
	edge, _ := filepath.Glob(filepath.Join(connectorsDir, "_edgecases", "*", "expanded.json"))
	files = append(files, edge...)
	if len(files) == 0 {
		t.Logf("%s not found: using the testdata fixture only", connectorsDir)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		runtimeStrings(v, found)
	}
	if len(files) > 0 {
		source = connectorsDir
	}
	b, err := os.ReadFile("testdata/corpus_expressions.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture []string
	if err := json.Unmarshal(b, &fixture); err != nil {
		t.Fatal(err)
	}
	for _, s := range fixture {
		if len(files) > 0 && !found[s] {
			t.Errorf("fixture string %q is no longer in the corpus; regenerate testdata", s)
		}
		found[s] = true
	}
	srcs := make([]string, 0, len(found))
	for s := range found {
		srcs = append(srcs, s)
	}
	slices.Sort(srcs)

	ctx := sampleContext(t)
	var ok, undefined int
	for _, src := range srcs {
		tpl, err := Compile(src)
		if err != nil {
			t.Errorf("compile %q: %v", src, err)
			continue
		}
		if _, _, err := RenderValue(ctx, tpl); err != nil {
			if !errors.Is(err, ErrUndefined) {
				t.Errorf("render %q: %v (want success or ErrUndefined)", src, err)
				continue
			}
			undefined++
			t.Logf("undefined with the sample context: %v", err)
			continue
		}
		ok++
	}
	t.Logf("corpus runtime templates (%s): %d distinct, %d compiled, %d rendered, %d strict-undefined", source, len(srcs), len(srcs), ok, undefined)
	if ok == 0 {
		t.Error("nothing rendered")
	}
}
