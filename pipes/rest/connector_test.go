package rest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
)

const powerofficego = "/work/shared/connectors/powerofficego-connector/expanded.json"

// TestPowerOfficeGoExpanded runs the system:rest and two collect pipes of
// the expanded powerofficego connector, unchanged but for what other parts
// of Ferry own, against fakeapi:
//
//   - $SECRET(api_key) is replaced by the fake client secret, as the
//     secret store would before the system is built;
//   - the collect pipes' `template` transforms (transform-collect-rest) are
//     dropped: they are not this package's;
//   - fakeapi's token endpoint is /oauth/token while the connector posts to
//     $ENV(base_url)/OAuth/Token, so a one-line adapter routes that path
//     (the only shape fakeapi lacks for this connector).
//
// "customer" uses operation "list" (OData $top/$skip computed from an
// X-Sesam-Page header, constant next link, [same-next-page-request,
// empty-result]); "product" uses "alternate_list" (one request, since in
// $filter and the since param).
func TestPowerOfficeGoExpanded(t *testing.T) {
	raw, err := os.ReadFile(powerofficego)
	if err != nil {
		t.Skipf("connector corpus not available: %v", err)
	}
	var comps []map[string]any
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(raw), "$SECRET(api_key)", "ferry-secret")), &comps); err != nil {
		t.Fatal(err)
	}
	var keep []map[string]any
	for _, c := range comps {
		switch c["_id"] {
		case "xxxxxx", "xxxxxx-customer-collect", "xxxxxx-product-collect":
			delete(c, "transform")
			keep = append(keep, c)
		}
	}
	if len(keep) != 3 {
		t.Fatalf("found %d of the 3 components", len(keep))
	}
	cfg, _ := json.MarshalIndent(keep, "", "  ")
	adapter := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/api/OAuth/Token" {
				r.URL.Path = "/oauth/token"
			}
			h.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, fakeapi.Options{Seed: map[string]int{"Customer": 45, "Product": 30}, Auth: fakeapi.AuthBearer}, string(cfg),
		envOptions{wrap: adapter, extra: map[string]string{"base_url": "{base}/api", "application_key": "ferry-client"}})

	rec := e.mustRun("xxxxxx-customer-collect")
	if rec.Read != 45 || rec.Written != 45 {
		t.Fatalf("customer run = %+v", rec)
	}
	var skips []string
	for _, r := range e.listRequests("Customer") {
		q, _ := url.ParseQuery(r.RawQuery)
		if q.Get("$top") != "20" || q.Get("$orderby") != "Name asc" || !strings.HasPrefix(q.Get("$filter"), "(LastChanged ge datetimeoffset'1970-01-01')") {
			t.Errorf("request query %q", r.RawQuery)
		}
		skips = append(skips, q.Get("$skip")+"@"+r.Header.Get("X-Sesam-Page"))
	}
	if got := strings.Join(skips, ","); got != "0@1,20@2,40@3,60@4" {
		t.Errorf("$skip@X-Sesam-Page = %s", got)
	}
	if got := e.since("xxxxxx-customer-collect"); got != "2024-01-01" {
		t.Errorf("since token %q, want the truncated lastChanged date", got)
	}
	if st := e.api.Stats(); st.TokensIssued != 1 || st.Unauthorized != 0 {
		t.Errorf("oauth2 stats %+v", st)
	}
	ent := e.entities("xxxxxx-customer-collect")["17"]
	if ent == nil || ent["id"] != json.Number("17") {
		t.Errorf("customer 17 = %v", ent)
	}

	if rec := e.mustRun("xxxxxx-product-collect"); rec.Read != 30 {
		t.Fatalf("product run = %+v", rec)
	}
	// The second run sends since in $filter and as the since param.
	e.api.ResetStats()
	if rec := e.mustRun("xxxxxx-product-collect"); rec.SyncType != "incremental" || rec.Written != 0 {
		t.Errorf("second product run = %+v", rec)
	}
	reqs := e.listRequests("Product")
	if len(reqs) != 1 {
		t.Fatalf("%d product requests", len(reqs))
	}
	q, _ := url.ParseQuery(reqs[0].RawQuery)
	if q.Get("since") != "2024-01-01" || q.Get("$filter") != "(LastChanged ge datetimeoffset'2024-01-01')" {
		t.Errorf("second product query %q", reqs[0].RawQuery)
	}
}
