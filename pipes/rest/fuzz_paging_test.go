package rest_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/sinks"
)

// pagingConfigs are the paging styles FuzzPaging drives: next link from
// the Link header, from the body (payload_property "data"), from a
// response header, and offset paging with not-full-page termination.
var pagingConfigs = []string{
	`"next_page_link": "{{ headers.Link.next }}"`,
	`"payload_property": "data", "next_page_link": "{{ body.next }}", "next_page_termination_strategy": ["next-page-link-empty", "same-response"]`,
	`"payload_property": "result.items", "next_page_link": "{{ response_headers['X-Next'] }}", "id_expression": "{{ id }}-{{ page }}"`,
	`"params": {"offset": "{{ page * 2 }}", "limit": 2}, "page_size": 2, "next_page_link": "{{ url }}", "next_page_termination_strategy": ["not-full-page", "empty-result"], "updated_expression": "{{ updated }}"`,
}

// FuzzPaging serves arbitrary bodies, Link and X-Next headers and content
// types to a rest source in each paging style: the run may fail, but with
// an error (no panic, no hang, no endless paging past max_pages), and
// every entity it emits is an object with a non-empty string _id.
func FuzzPaging(f *testing.F) {
	for _, s := range []struct {
		body, link, next, ctype string
	}{
		{`[{"_id": "1"}, {"_id": "2"}]`, `<?page=2>; rel="next"`, "", "application/json"},
		{`{"data": [{"_id": "a", "x": 1}], "next": "?page=2"}`, "", "", "application/json"},
		{`{"result": {"items": [{"id": 7}]}}`, "", "/items?page=3", "application/json; charset=utf-8"},
		{`[{"_id": "1", "updated": 5}, {"_id": "2", "updated": "x"}]`, "", "", "application/json"},
		{`{"data": null}`, `<>; rel="next"`, "", "text/json"},
		{`<html>maintenance</html>`, "", "", "text/html"},
		{`{"data": [{"_id": ""}]}`, `<http://[::1]:0/x>; rel=next`, "http://%zz", "application/json"},
		{"[{\"_id\": \"\xff\"}]", "", "", "application/json"},
	} {
		for i := range pagingConfigs {
			f.Add(uint8(i), s.body, s.link, s.next, s.ctype)
		}
	}
	// One server and one compiled plan per style for the whole run: the
	// handler answers with the input under test.
	type answer struct{ body, link, next, ctype string }
	var cur atomic.Pointer[answer]
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		a := cur.Load()
		// Header values must be valid for net/http to send them.
		if a.link != "" && validHeader(a.link) {
			w.Header().Set("Link", a.link)
		}
		if a.next != "" && validHeader(a.next) {
			w.Header().Set("X-Next", a.next)
		}
		if validHeader(a.ctype) {
			w.Header().Set("Content-Type", a.ctype)
		}
		w.Write([]byte(a.body))
	}))
	f.Cleanup(srv.Close)
	noSleep := func(ctx context.Context, d time.Duration) error { return ctx.Err() }
	// Every connection goes to the test server, whatever host a next link
	// names: the fuzzer must not reach (or wait for) the network.
	local := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
		},
	}}
	var plans []*engine.Plan
	for _, style := range pagingConfigs {
		cfg := `[{"_id": "api", "type": "system:rest", "url_pattern": "` + srv.URL + `/%s",
			"operations": {"list": {"url": "items", ` + style + `}}},
			{"_id": "p", "type": "pipe", "source": {"type": "rest", "system": "api", "operation": "list", "max_pages": 5}, "sink": {"type": "null"}}]`
		dir := f.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "c.json"), []byte(cfg), 0o644); err != nil {
			f.Fatal(err)
		}
		conf, err := engine.LoadConfig([]string{dir}, engine.EnvFrom(nil))
		if err != nil {
			f.Fatal(err)
		}
		reg := engine.NewRegistry()
		sinks.Register(reg)
		rest.RegisterWith(reg, rest.Options{HTTPOptions: []httpclient.Option{httpclient.WithSleep(noSleep), httpclient.WithHTTPClient(local)}})
		plan, err := engine.Compile(conf, reg, nil)
		if err != nil {
			f.Fatalf("compile: %v", err)
		}
		plans = append(plans, plan)
	}
	f.Fuzz(func(t *testing.T, style uint8, body, link, next, ctype string) {
		if len(body) > 8192 || len(link) > 512 || len(next) > 512 {
			t.Skip()
		}
		cur.Store(&answer{body, link, next, ctype})
		hits.Store(0)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := plans[int(style)%len(plans)].Pipe("p").Source.Open(ctx, engine.ReadRequest{Full: true, BatchSize: 100})
		if err != nil {
			return
		}
		defer r.Close()
		for {
			b, err := r.Next(ctx)
			if errors.Is(err, engine.EOF) {
				break
			}
			if err != nil {
				if ctx.Err() != nil {
					t.Fatalf("paging did not end within 10s (%d requests)", hits.Load())
				}
				return
			}
			for _, e := range b.Entities {
				if id, ok := e["_id"].(string); !ok || id == "" {
					t.Fatalf("entity without a string _id: %v", e)
				}
			}
		}
		if n := hits.Load(); n > 5+2 {
			t.Fatalf("%d requests with max_pages 5", n)
		}
	})
}

// validHeader reports whether s can be sent as a header value.
func validHeader(s string) bool {
	for _, r := range s {
		if r < ' ' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return !strings.ContainsAny(s, "\r\n") && strconv.CanBackquote(s)
}
