package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/enginetest"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/pipes/all"
)

// newAPI builds an API over the two-pipe test config with opts (the test
// token unless opts sets one) and serves it.
func newAPI(t *testing.T, opts httpapi.Options) (*httptest.Server, *httpapi.API, *engine.Engine) {
	t.Helper()
	eng, _ := enginetest.Engine(t, all.Registry(), t.TempDir(), `[
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[{"_id":"1","n":1},{"_id":"2"},{"_id":"x/y"}]},"pump":{"schedule_interval":60}},
 {"_id":"b","type":"pipe","source":{"type":"dataset","dataset":"a"},"pump":{"mode":"manual"}}]`)
	if opts.Token == "" && !opts.NoAuth {
		opts.Token = testToken
	}
	api, err := httpapi.New(eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv, api, eng
}

// send is a raw request: no token or content type unless hdr says so.
func send(t *testing.T, method, url, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var protectedRoutes = []struct{ method, path string }{
	{"GET", "/api/pipes"}, {"GET", "/api/pipes/a"}, {"GET", "/api/pipes/a/runs"},
	{"POST", "/api/pipes/a/run"}, {"POST", "/api/pipes/a/reset"}, {"POST", "/api/pipes/a/rescan"},
	{"GET", "/api/datasets"}, {"GET", "/api/datasets/a"}, {"GET", "/api/datasets/a/entities"},
	{"GET", "/api/datasets/a/entities/1"}, {"GET", "/metrics"}, {"GET", "/nowhere"},
}

// TestEveryRouteNeedsTheToken: without the token, or with a wrong one,
// every route but /healthz and /ready answers 401 and changes nothing
// (before: POST run and reset answered 200 to anyone).
func TestEveryRouteNeedsTheToken(t *testing.T) {
	srv, _, eng := newAPI(t, httpapi.Options{})
	for _, auth := range []string{"", "Bearer wrong-token", "Basic " + testToken, "Bearer"} {
		for _, rt := range protectedRoutes {
			hdr := []string{"Content-Type", "application/json"}
			if auth != "" {
				hdr = append(hdr, "Authorization", auth)
			}
			code, body, h := send(t, rt.method, srv.URL+rt.path, "", hdr...)
			if code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) || h.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s with %q = %d %s", rt.method, rt.path, auth, code, body)
			}
		}
	}
	if runs, _ := eng.Store.Runs(context.Background(), "", 10); len(runs) != 0 {
		t.Errorf("unauthenticated requests ran pipes: %+v", runs)
	}
	for _, path := range []string{"/healthz", "/ready"} {
		if code, body, _ := send(t, "GET", srv.URL+path, ""); code != 200 {
			t.Errorf("GET %s without token = %d %s", path, code, body)
		}
	}
	// The token opens every route.
	for _, rt := range protectedRoutes {
		code, body, _ := send(t, rt.method, srv.URL+rt.path, "", "Content-Type", "application/json", "Authorization", "Bearer "+testToken)
		want := 200
		if rt.path == "/nowhere" {
			want = 404
		}
		if code != want {
			t.Errorf("%s %s with the token = %d %s", rt.method, rt.path, code, body)
		}
	}
}

// TestNoTokenConfiguredRefusesEverything: the zero Options serve nothing
// protected.
func TestNoTokenConfiguredRefusesEverything(t *testing.T) {
	eng, _ := enginetest.Engine(t, all.Registry(), t.TempDir(), `[{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]}}]`)
	api, err := httpapi.New(eng, httpapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	if code, body, _ := send(t, "GET", srv.URL+"/api/pipes", "", "Authorization", "Bearer "); code != 401 {
		t.Errorf("no token configured: %d %s", code, body)
	}
}

// TestHostMustNameTheServer: a Host that is not localhost, an IP address
// or an allowed name gets 403 on every path, token or not (DNS
// rebinding: the attacker's name resolves to 127.0.0.1).
func TestHostMustNameTheServer(t *testing.T) {
	srv, _, _ := newAPI(t, httpapi.Options{AllowedHosts: []string{"ferry.internal", ".corp.example"}})
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	auth := []string{"Authorization", "Bearer " + testToken}
	for host, want := range map[string]int{
		"attacker.example:" + port:   403,
		"attacker.example":           403,
		"localhost.attacker.example": 403,
		"corp.example":               403,
		"localhost:" + port:          200,
		"LOCALHOST":                  200,
		"app.localhost:" + port:      200,
		"127.0.0.1:" + port:          200,
		"[::1]:" + port:              200,
		"10.1.2.3":                   200,
		"ferry.internal:" + port:     200,
		"eu.corp.example":            200,
	} {
		for _, path := range []string{"/api/pipes", "/healthz"} {
			code, body, _ := send(t, "GET", srv.URL+path, "", append([]string{"Host", host}, auth...)...)
			if code != want {
				t.Errorf("Host %q %s = %d %s, want %d", host, path, code, body, want)
			}
			if want == 403 && !strings.Contains(body, "--allow-host") {
				t.Errorf("Host %q: the refusal does not say how to allow it: %s", host, body)
			}
		}
	}
}

// TestCrossSiteRequestsAreRefused: state-changing requests from another
// origin (a form posted by a page in the operator's browser) or that are
// not JSON get 403, even with credentials; same-origin JSON passes.
func TestCrossSiteRequestsAreRefused(t *testing.T) {
	srv, _, eng := newAPI(t, httpapi.Options{UI: true})
	cookie := login(t, srv.URL)
	for name, hdr := range map[string][]string{
		"form with cookie":                {"Cookie", cookie, "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example"},
		"text/plain with cookie":          {"Cookie", cookie, "Content-Type", "text/plain"},
		"no content type":                 {"Authorization", "Bearer " + testToken},
		"multipart form":                  {"Authorization", "Bearer " + testToken, "Content-Type", "multipart/form-data; boundary=x"},
		"json from another origin":        {"Cookie", cookie, "Content-Type", "application/json", "Origin", "http://evil.example"},
		"json, cross-site fetch metadata": {"Cookie", cookie, "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"},
		"json, same-site other origin":    {"Cookie", cookie, "Content-Type", "application/json", "Sec-Fetch-Site", "same-site"},
		"token, other origin":             {"Authorization", "Bearer " + testToken, "Content-Type", "application/json", "Origin", "http://localhost:1"},
	} {
		for _, action := range []string{"run", "reset", "rescan"} {
			code, body, _ := send(t, "POST", srv.URL+"/api/pipes/a/"+action, "x=1", hdr...)
			if code != http.StatusForbidden {
				t.Errorf("%s: POST %s = %d %s, want 403", name, action, code, body)
			}
		}
	}
	if runs, _ := eng.Store.Runs(context.Background(), "", 10); len(runs) != 0 {
		t.Fatalf("a refused request ran a pipe: %+v", runs)
	}
	for name, hdr := range map[string][]string{
		"token, no origin":                  {"Authorization", "Bearer " + testToken, "Content-Type", "application/json"},
		"token, json charset":               {"Authorization", "Bearer " + testToken, "Content-Type", "application/json; charset=utf-8"},
		"cookie, same origin":               {"Cookie", cookie, "Content-Type", "application/json", "Origin", srv.URL, "Sec-Fetch-Site", "same-origin"},
		"cookie, origin, no fetch metadata": {"Cookie", cookie, "Content-Type", "application/json", "Origin", srv.URL},
	} {
		if code, body, _ := send(t, "POST", srv.URL+"/api/pipes/a/run", "{}", hdr...); code != 200 {
			t.Errorf("%s: run = %d %s", name, code, body)
		}
	}
}

// login posts the token to the login form and returns the session cookie
// as a Cookie header value.
func login(t *testing.T, base string) string {
	t.Helper()
	code, body, h := send(t, "POST", base+"/login", url.Values{"token": {testToken}, "next": {"/ui/datasets"}}.Encode(),
		"Content-Type", "application/x-www-form-urlencoded")
	if code != http.StatusSeeOther || h.Get("Location") != "/ui/datasets" {
		t.Fatalf("login = %d %s %v", code, body, h)
	}
	c := h.Get("Set-Cookie")
	for _, want := range []string{"ferry_session=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(c, want) {
			t.Errorf("session cookie %q lacks %s", c, want)
		}
	}
	if strings.Contains(c, testToken) {
		t.Errorf("the session cookie holds the token: %q", c)
	}
	v, _, _ := strings.Cut(c, ";")
	return v
}

// TestLoginSession: a wrong token shows the form again (401); the cookie
// opens pages and the API; it is refused once expired or forged, and
// after logout; a login redirect stays on this server.
func TestLoginSession(t *testing.T) {
	srv, _, _ := newAPI(t, httpapi.Options{UI: true})
	code, body, h := send(t, "GET", srv.URL+"/ui/datasets", "", "Accept", "text/html")
	if code != http.StatusSeeOther || h.Get("Location") != "/login?next=%2Fui%2Fdatasets" {
		t.Errorf("page without a session = %d %v", code, h.Get("Location"))
	}
	if code, body, _ = send(t, "POST", srv.URL+"/login", "token=nope", "Content-Type", "application/x-www-form-urlencoded"); code != 401 || !strings.Contains(body, "not the token") {
		t.Errorf("wrong token = %d %s", code, body)
	}
	cookie := login(t, srv.URL)
	if code, body, _ = send(t, "GET", srv.URL+"/ui/datasets", "", "Cookie", cookie); code != 200 || !strings.Contains(body, "Log out") {
		t.Errorf("page with the session = %d", code)
	}
	if code, _, _ = send(t, "GET", srv.URL+"/api/pipes", "", "Cookie", cookie); code != 200 {
		t.Errorf("API with the session = %d", code)
	}
	name, value, _ := strings.Cut(cookie, "=")
	exp, mac, _ := strings.Cut(value, ".")
	for what, forged := range map[string]string{
		"expired":   fmt.Sprintf("%s=%d.%s", name, time.Now().Add(-time.Hour).Unix(), mac),
		"extended":  fmt.Sprintf("%s=%d.%s", name, time.Now().Add(48*time.Hour).Unix(), mac),
		"no mac":    name + "=" + exp,
		"the token": name + "=" + testToken,
	} {
		if code, _, _ := send(t, "GET", srv.URL+"/api/pipes", "", "Cookie", forged); code != 401 {
			t.Errorf("%s session = %d, want 401", what, code)
		}
	}
	code, _, h = send(t, "POST", srv.URL+"/logout", "", "Cookie", cookie)
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout = %d %v", code, h)
	}
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example"} {
		_, _, h := send(t, "POST", srv.URL+"/login", url.Values{"token": {testToken}, "next": {next}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
		if h.Get("Location") != "/" {
			t.Errorf("login with next=%q redirects to %q", next, h.Get("Location"))
		}
	}
}

// TestBodyBudget: concurrent large bodies share one budget: those that do
// not fit get 429 at once instead of all being read into memory (before:
// 12 posts of 60 MB took 1.6 GB); one body over the per-request limit gets
// 413; bodies of unknown length are counted as they arrive.
func TestBodyBudget(t *testing.T) {
	const mib = 1 << 20
	srv, api, _ := newAPI(t, httpapi.Options{BodyBudget: 10 * mib, MaxRequestBytes: 4 * mib})
	release := make(chan struct{})
	var admitted sync.WaitGroup
	api.HandlePublic("POST /hook", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		admitted.Done()
		<-release
		fmt.Fprintf(w, `{"read":%d}`, n)
	}))
	body := bytes.Repeat([]byte("x"), 3*mib)
	const posts = 8
	admitted.Add(3) // 3 x 3 MiB fit in 10 MiB
	codes := make(chan int, posts)
	var wg sync.WaitGroup
	for range posts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(srv.URL+"/hook", "application/json", bytes.NewReader(body))
			if err != nil {
				codes <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	admitted.Wait()
	// The three admitted requests hold the budget; the others were
	// answered 429 without being read.
	var got []int
	for range posts - 3 {
		got = append(got, <-codes)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		got = append(got, c)
	}
	ok, tooMany := 0, 0
	for _, c := range got {
		switch c {
		case 200:
			ok++
		case 429:
			tooMany++
		}
	}
	if ok != 3 || tooMany != posts-3 {
		t.Errorf("statuses %v: want 3 x 200 and %d x 429", got, posts-3)
	}
	if peak := httpapi.BudgetPeak(api); peak > 10*mib {
		t.Errorf("peak bytes in flight %d > budget", peak)
	}
	// Budget released: a new post fits.
	admitted.Add(1)
	release = make(chan struct{})
	close(release)
	if code, body, _ := send(t, "POST", srv.URL+"/hook", string(body), "Content-Type", "application/json"); code != 200 {
		t.Errorf("after release: %d %s", code, body)
	}
	// One body over the per-request limit.
	code, b, _ := send(t, "POST", srv.URL+"/hook", strings.Repeat("y", 5*mib), "Content-Type", "application/json")
	if code != 413 || !strings.Contains(b, "larger than") {
		t.Errorf("5 MiB body = %d %s", code, b)
	}
	// Unknown length (chunked): counted as read.
	admitted.Add(1)
	pr, pw := io.Pipe()
	go func() {
		for range 6 {
			pw.Write(bytes.Repeat([]byte("z"), mib))
		}
		pw.Close()
	}()
	resp, err := http.Post(srv.URL+"/hook", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("6 MiB chunked body = %d, want 413", resp.StatusCode)
	}
	admitted.Add(1)
	resp, err = http.Post(srv.URL+"/hook", "application/json", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")))
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(rb) != `{"read":4}` {
		t.Errorf("small chunked body = %d %s", resp.StatusCode, rb)
	}
}

// TestErrorsAreJSONOnEveryPath: unknown paths, wrong methods and refusals
// answer JSON.
func TestErrorsAreJSONOnEveryPath(t *testing.T) {
	srv, _, _ := newAPI(t, httpapi.Options{UI: true})
	auth := []string{"Authorization", "Bearer " + testToken}
	for _, c := range []struct {
		method, path string
		hdr          []string
		want         int
	}{
		{"GET", "/nope", auth, 404},
		{"GET", "/api/nope/deeper", auth, 404},
		{"GET", "/ui/nope", auth, 404},
		{"GET", "/static/nope.css", nil, 404},
		{"DELETE", "/api/pipes/a", append([]string{"Content-Type", "application/json"}, auth...), 405},
		{"GET", "/api/pipes/a/run", auth, 405},
		{"GET", "/api/pipes", nil, 401},
		{"GET", "/ui/pipes/zz", auth, 404},
		{"GET", "/ui/datasets/zz", auth, 404},
		{"GET", "/api/pipes", []string{"Host", "evil.example"}, 403},
	} {
		code, body, h := send(t, c.method, srv.URL+c.path, "", c.hdr...)
		var v map[string]string
		if code != c.want || h.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &v) != nil || v["error"] == "" {
			t.Errorf("%s %s = %d %q %s", c.method, c.path, code, h.Get("Content-Type"), body)
		}
	}
}

// TestZeroTimesDoNotLeak: before any run the API shows no year-1 times.
func TestZeroTimesDoNotLeak(t *testing.T) {
	srv, _, eng := newAPI(t, httpapi.Options{})
	tx, _ := eng.Store.Begin(context.Background())
	tx.EnsureDataset("empty")
	tx.Commit()
	for _, path := range []string{"/api/pipes", "/api/pipes/a", "/api/datasets", "/api/datasets/empty"} {
		code, body, _ := send(t, "GET", srv.URL+path, "", "Authorization", "Bearer "+testToken)
		if code != 200 || strings.Contains(body, "0001-01-01") {
			t.Errorf("GET %s = %d %s", path, code, body)
		}
	}
}

// TestReady: /ready names its checks and answers 503 when one fails.
func TestReady(t *testing.T) {
	failing := true
	srv, _, eng := newAPI(t, httpapi.Options{Ready: map[string]func() error{"scheduler": func() error {
		if failing {
			return fmt.Errorf("not running")
		}
		return nil
	}}})
	code, body, _ := send(t, "GET", srv.URL+"/ready", "")
	if code != 503 || !strings.Contains(body, `"scheduler": "not running"`) || !strings.Contains(body, `"store": "ok"`) {
		t.Errorf("ready with a failing check = %d %s", code, body)
	}
	failing = false
	if code, body, _ := send(t, "GET", srv.URL+"/ready", ""); code != 200 || !strings.Contains(body, `"ready": true`) {
		t.Errorf("ready = %d %s", code, body)
	}
	eng.Store.Close()
	if code, body, _ := send(t, "GET", srv.URL+"/ready", ""); code != 503 || strings.Contains(body, `"store": "ok"`) {
		t.Errorf("ready with the store closed = %d %s", code, body)
	}
	if code, _, _ := send(t, "GET", srv.URL+"/healthz", ""); code != 200 {
		t.Errorf("healthz = %d", code)
	}
}

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr string
		opts httpapi.Options
		ok   bool
	}{
		{"127.0.0.1:9070", httpapi.Options{NoAuth: true}, true},
		{"localhost:9070", httpapi.Options{NoAuth: true}, true},
		{"[::1]:9070", httpapi.Options{NoAuth: true}, true},
		{"127.0.0.2:9070", httpapi.Options{NoAuth: true}, true},
		{"0.0.0.0:9070", httpapi.Options{NoAuth: true}, false},
		{":9070", httpapi.Options{NoAuth: true}, false},
		{"[::]:9070", httpapi.Options{NoAuth: true}, false},
		{"10.0.0.5:9070", httpapi.Options{}, false},
		{"0.0.0.0:9070", httpapi.Options{Token: "short"}, false},
		{"0.0.0.0:9070", httpapi.Options{Token: "a-token-long-enough-0123"}, true},
	} {
		if err := httpapi.CheckListen(c.addr, c.opts); (err == nil) != c.ok {
			t.Errorf("CheckListen(%q, %+v) = %v", c.addr, c.opts, err)
		}
	}
}

func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tok, src, created, err := httpapi.ResolveToken(dir, getenv)
	path := filepath.Join(dir, httpapi.TokenFile)
	if err != nil || !created || src != path || len(tok) < 40 {
		t.Fatalf("first resolve: %q %q %v %v", tok, src, created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode().Perm())
	}
	again, _, created, err := httpapi.ResolveToken(dir, getenv)
	if err != nil || created || again != tok {
		t.Errorf("second resolve: %q %v %v", again, created, err)
	}
	env[httpapi.TokenEnv] = " from-env "
	if v, src, _, _ := httpapi.ResolveToken(dir, getenv); v != "from-env" || src != httpapi.TokenEnv {
		t.Errorf("env token: %q %q", v, src)
	}
	delete(env, httpapi.TokenEnv)
	os.Chmod(path, 0o644)
	if _, _, _, err := httpapi.ResolveToken(dir, getenv); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable token file: %v", err)
	}
	os.WriteFile(path, []byte("\n"), 0o600)
	os.Chmod(path, 0o600)
	if _, _, _, err := httpapi.ResolveToken(dir, getenv); err == nil {
		t.Error("an empty token file was accepted")
	}
	acc := httpapi.Access{Token: tok, Source: path, Created: true}
	if n := strings.Count(acc.Notice("http://127.0.0.1:9070"), tok); n != 1 {
		t.Errorf("a generated token is shown %d times", n)
	}
	if strings.Contains(httpapi.Access{Token: tok, Source: path}.Notice("http://127.0.0.1:9070"), tok) {
		t.Error("a token from the file is shown again")
	}
	if n := (httpapi.Access{Token: tok, Source: path}).Notice("http://0.0.0.0:9070"); !strings.Contains(n, "TLS") {
		t.Errorf("no warning for a non-loopback address: %s", n)
	}
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
