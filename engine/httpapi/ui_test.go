package httpapi_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/engine/storetest"
)

func TestDiffJSON(t *testing.T) {
	got := httpapi.DiffJSON(
		[]byte(`{"_id":"1","a":1,"addr":{"city":"Oslo","zip":"0150"},"tags":["x"],"gone":true,"n":1.50}`),
		[]byte(`{"_id":"1","a":1,"addr":{"city":"Bergen","zip":"0150","country":"NO"},"tags":["x","y"],"_deleted":true,"n":1.5}`))
	want := []string{
		`added /_deleted  true`,
		`changed /addr/city "Oslo" "Bergen"`,
		`added /addr/country  "NO"`,
		`removed /gone true `,
		`changed /n 1.50 1.5`,
		`changed /tags ["x"] ["x","y"]`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := httpapi.DiffJSON([]byte(`{"a":{"b":1}}`), []byte(`{"a":{"b":1}}`)); len(d) != 0 {
		t.Errorf("equal bodies: %v", d)
	}
}

// TestBrowserPages renders every page of the browser over a small store
// (no browser needed; TestBrowserInChromium clicks through them).
func TestBrowserPages(t *testing.T) {
	srv, _, eng := newAPI(t, httpapi.Options{UI: true})
	ctx := context.Background()
	if _, err := eng.Run(ctx, "a", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	tx, _ := eng.Store.Begin(ctx)
	for i := range 120 {
		p := storetest.Prep(t, fmt.Sprintf(`{"_id":"e%03d","v":%d}`, i, i))
		tx.Put("a", &p, 1)
	}
	p := storetest.Prep(t, `{"_id":"1","n":2,"new":"yes"}`)
	tx.Put("a", &p, 2)
	tx.Commit()
	if _, err := eng.Run(ctx, "b", engine.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	page := func(path string, wants ...string) string {
		t.Helper()
		code, body, h := send(t, "GET", srv.URL+path, "", "Authorization", "Bearer "+testToken, "Accept", "text/html")
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s = %d %s", path, code, body)
		}
		for _, hdr := range []string{"Content-Security-Policy", "X-Frame-Options"} {
			if h.Get(hdr) == "" {
				t.Errorf("GET %s: no %s", path, hdr)
			}
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q", path, w)
			}
		}
		return body
	}
	page("/", `href="/ui/pipes/a"`, `data-action="run" data-pipe="a"`, `every 1m0s`, `manual`, `<span class="badge ok">ok</span>`)
	page("/ui/pipes/b", "Run log", `<th class="num">read</th>`, `href="/ui/datasets/a"`, `&#34;dataset&#34;: &#34;a&#34;`)
	page("/ui/datasets", `href="/ui/datasets/a"`, `href="/ui/pipes/a"`)
	// The first page holds 50 entities in _id order (1, 2, e000..e047)
	// and links the next.
	body := page("/ui/datasets/a", `entity?id=1"`, `entity?id=e000"`, `entity?id=e047"`, `id="next-page"`, `after=e047`)
	if strings.Contains(body, `entity?id=e048"`) {
		t.Errorf("first page is not the first 50 _ids in order")
	}
	body = page("/ui/datasets/a?after=e047", `entity?id=e048"`, `entity?id=e097"`, `« first`)
	if strings.Contains(body, `entity?id=e047"`) || strings.Contains(body, `entity?id=e098"`) {
		t.Error("second page is not e048..e097")
	}
	body = page("/ui/datasets/a?prefix=e11", `entity?id=e110"`, `entity?id=e119"`)
	if strings.Count(body, "entity?id=") != 10 || strings.Contains(body, "next-page") {
		t.Errorf("prefix search found %d", strings.Count(body, "entity?id="))
	}
	page("/ui/datasets/a?prefix=zz", "No _id starts with")
	page("/ui/datasets/a/entity?id=1", "2 versions", `/new`, `&#34;yes&#34;`, `/n`, "First version.")
	page("/ui/datasets/a/entity?id=x%2Fy", "1 version,")
	page("/ui/connectors", "No connector instances")
	code, body, _ := send(t, "GET", srv.URL+"/ui/datasets/a/entity?id=nope", "", "Authorization", "Bearer "+testToken, "Accept", "text/html")
	if code != 404 || !strings.Contains(body, "no entity") || !strings.Contains(body, "<html") {
		t.Errorf("unknown entity = %d %s", code, body)
	}
	code, _, h := send(t, "GET", srv.URL+"/static/app.js", "")
	if code != 200 || !strings.Contains(h.Get("Content-Type"), "javascript") {
		t.Errorf("app.js = %d %s", code, h.Get("Content-Type"))
	}
	// Without UI, / is a JSON 404.
	srv2, _, _ := newAPI(t, httpapi.Options{})
	if code, body, _ := send(t, "GET", srv2.URL+"/", "", "Authorization", "Bearer "+testToken); code != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("/ without UI = %d %s", code, body)
	}
}
