package httpclient_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrydata/ferry/pipes/rest/fakeapi"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
)

// fakeTime is an injectable clock whose Sleep records the wait and
// advances the clock instead of waiting.
type fakeTime struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeTime() *fakeTime { return &fakeTime{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (f *fakeTime) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }

func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeTime) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

func (f *fakeTime) opts() []httpclient.Option {
	return []httpclient.Option{httpclient.WithClock(f.Now), httpclient.WithSleep(f.Sleep)}
}

func newClient(t *testing.T, cfg httpclient.Config, opts ...httpclient.Option) *httpclient.Client {
	t.Helper()
	c, err := httpclient.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func config(pattern string) httpclient.Config {
	c := httpclient.DefaultConfig()
	c.SystemID = "sys1"
	c.URLPattern = pattern
	return c
}

func TestURLJoining(t *testing.T) {
	cases := []struct {
		pattern, url string
		params       url.Values
		want         string
	}{
		{"https://api.x/v1/%s", "customers", nil, "https://api.x/v1/customers"},
		{"https://api.x/v1/%s", "customers?page=2", url.Values{"limit": {"5"}}, "https://api.x/v1/customers?page=2&limit=5"},
		{"https://api.x/v1/%s", "", url.Values{"$skip": {"20"}, "$top": {"20"}}, "https://api.x/v1/?%24skip=20&%24top=20"},
		{"https://gql.x/graphql/public%s", "", nil, "https://gql.x/graphql/public"},
		{"https://api.trello.com/1/%s?token=T&key=K", "members/me/boards", nil, "https://api.trello.com/1/members/me/boards?token=T&key=K"},
		{"https://api.trello.com/1/%s?token=T&key=K", "boards?fields=name", url.Values{"a": {"b"}}, "https://api.trello.com/1/boards?fields=name&token=T&key=K&a=b"},
		{"https://api.x/v1", "customers", nil, "https://api.x/v1/customers"},
		{"https://api.x/v1/", "customers", nil, "https://api.x/v1/customers"},
		{"https://api.x/v1", "?q=1", nil, "https://api.x/v1?q=1"},
		{"https://api.x/v1/%s", "https://other.example/next?after=9", nil, "https://other.example/next?after=9"},
		{"https://api.x/v1/%s", "HTTP://other.example/p", nil, "HTTP://other.example/p"},
	}
	for _, tc := range cases {
		c := newClient(t, config(tc.pattern))
		got, err := c.URL(httpclient.Request{URL: tc.url, Params: tc.params})
		if err != nil || got != tc.want {
			t.Errorf("URL(%q, %q) = %q, %v; want %q", tc.pattern, tc.url, got, err, tc.want)
		}
	}
	c := newClient(t, config("%s"))
	if _, err := c.URL(httpclient.Request{URL: "relative/only"}); !errors.Is(err, httpclient.ErrInvalidRequest) {
		t.Fatalf("relative without pattern: %v", err)
	}
}

// echo answers with the request's method, URL, headers and body as JSON.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "url": r.URL.String(), "header": r.Header, "body": string(body)})
}

type echoed struct {
	Method, URL, Body string
	Header            http.Header
}

func doEcho(t *testing.T, c *httpclient.Client, r httpclient.Request) echoed {
	t.Helper()
	resp, err := c.Do(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	var e echoed
	if err := json.Unmarshal(resp.Body, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestHeadersAndBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(echo))
	defer srv.Close()
	cfg := config(srv.URL + "/api/%s")
	cfg.Headers = map[string]string{"X-A": "system", "X-B": "system", "X-Gone": "system", "Authorization": "Token ignored"}
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthBasic, Username: "me@x.com/token", Password: "pa:ss"}
	c := newClient(t, cfg)
	e := doEcho(t, c, httpclient.Request{Method: "post", URL: "things", Params: url.Values{"q": {"a b"}},
		Headers: map[string]string{"X-B": "request", "X-C": "request", "X-Gone": ""}, Body: []byte(`{"a":1}`)})
	if e.Method != "POST" || e.URL != "/api/things?q=a+b" || e.Body != `{"a":1}` {
		t.Fatalf("echo %+v", e)
	}
	h := e.Header
	if h.Get("X-A") != "system" || h.Get("X-B") != "request" || h.Get("X-C") != "request" || h.Get("X-Gone") != "" {
		t.Fatalf("header precedence: %v", h)
	}
	req := &http.Request{Header: http.Header{"Authorization": h["Authorization"]}}
	if u, p, ok := req.BasicAuth(); !ok || u != "me@x.com/token" || p != "pa:ss" {
		t.Fatalf("basic auth: %v", h["Authorization"])
	}
	if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "ferry" {
		t.Fatalf("defaults: %v", h)
	}
	e = doEcho(t, c, httpclient.Request{URL: "x", Body: []byte("a=b"), ContentType: "application/x-www-form-urlencoded"})
	if e.Method != "GET" || e.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Fatalf("content type %+v", e)
	}
}

func TestStaticBearerAndSystemHeaderAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(echo))
	defer srv.Close()
	cfg := config(srv.URL + "/%s")
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthBearer, Token: "jwt-abc"}
	if got := doEcho(t, newClient(t, cfg), httpclient.Request{URL: "x"}).Header.Get("Authorization"); got != "Bearer jwt-abc" {
		t.Fatalf("bearer %q", got)
	}
	// youtrack/wix style: the Authorization header comes from the system headers.
	cfg = config(srv.URL + "/%s")
	cfg.Headers = map[string]string{"Authorization": "Bearer perm-token"}
	if got := doEcho(t, newClient(t, cfg), httpclient.Request{URL: "x"}).Header.Get("Authorization"); got != "Bearer perm-token" {
		t.Fatalf("header auth %q", got)
	}
}

func Test429RetryAfterThenSuccess(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": 3}, Faults: fakeapi.Faults{RateLimitNext: 2, RetryAfter: "7"}})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	ft := newFakeTime()
	c := newClient(t, config(srv.URL+"/api/%s"), ft.opts()...)
	resp, err := c.Do(t.Context(), httpclient.Request{URL: "customers"})
	if err != nil || resp.Status != 200 || resp.Attempts != 3 {
		t.Fatalf("resp %+v err %v", resp, err)
	}
	if got := ft.Sleeps(); len(got) != 2 || got[0] != 7*time.Second || got[1] != 7*time.Second {
		t.Fatalf("sleeps %v", got)
	}

	// No Retry-After: rate_limiting_delay; retries exhausted: the 429 is returned.
	api.SetFaults(fakeapi.Faults{RateLimitNext: 10, RetryAfter: "none"})
	ft = newFakeTime()
	cfg := config(srv.URL + "/api/%s")
	cfg.RateLimitRetries, cfg.RateLimitDelay = 2, 60*time.Second
	c = newClient(t, cfg, ft.opts()...)
	resp, err = c.Do(t.Context(), httpclient.Request{URL: "customers"})
	if err != nil || resp.Status != 429 || resp.Attempts != 3 {
		t.Fatalf("exhausted: %+v %v", resp, err)
	}
	if got := ft.Sleeps(); len(got) != 2 || got[0] != time.Minute || got[1] != time.Minute {
		t.Fatalf("sleeps %v", got)
	}
	if err := resp.Err(nil); err == nil || !strings.Contains(err.Error(), "status 429 Too Many Requests") {
		t.Fatalf("Err: %v", err)
	}

	// A pipe-level override replaces the system's policy for one request.
	ft = newFakeTime()
	c = newClient(t, cfg, ft.opts()...)
	resp, err = c.Do(t.Context(), httpclient.Request{URL: "customers", RateLimit: &httpclient.RateLimit{Retries: 1, Delay: 5 * time.Second}})
	if err != nil || resp.Status != 429 || resp.Attempts != 2 {
		t.Fatalf("override: %+v %v", resp, err)
	}
	if got := ft.Sleeps(); len(got) != 1 || got[0] != 5*time.Second {
		t.Fatalf("override sleeps %v", got)
	}
}

func TestRetryAfterDateAndCap(t *testing.T) {
	ft := newFakeTime()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.Header().Set("Retry-After", ft.Now().Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(429)
		case 2:
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(503)
		default:
			w.WriteHeader(200)
		}
	}))
	defer srv.Close()
	cfg := config(srv.URL + "/%s")
	cfg.MaxRetryAfter = 2 * time.Minute
	cfg.RetryStrategy = []httpclient.RetryRule{{Key: "503", Statuses: httpclient.StatusSet{{Lo: 503, Hi: 503}}, Retries: 1, Delay: time.Second}}
	c := newClient(t, cfg, ft.opts()...)
	resp, err := c.Do(t.Context(), httpclient.Request{URL: "x"})
	if err != nil || resp.Status != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if got := ft.Sleeps(); len(got) != 2 || got[0] != 90*time.Second || got[1] != 2*time.Minute {
		t.Fatalf("sleeps %v", got)
	}
}

// flaky answers the listed statuses in turn, then 200.
func flaky(statuses ...int) (http.Handler, *atomic.Int32) {
	var n atomic.Int32
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if i < len(statuses) {
			w.WriteHeader(statuses[i])
			_, _ = io.WriteString(w, `{"error":"boom"}`)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}), &n
}

func rule(t *testing.T, key string, retries int, delay time.Duration) httpclient.RetryRule {
	t.Helper()
	if key == "default" {
		return httpclient.RetryRule{Key: key, Default: true, Retries: retries, Delay: delay}
	}
	s, err := httpclient.ParseStatusSet(key)
	if err != nil {
		t.Fatal(err)
	}
	return httpclient.RetryRule{Key: key, Statuses: s, Retries: retries, Delay: delay}
}

func Test5xxRetryStrategy(t *testing.T) {
	h, n := flaky(502, 500, 502)
	srv := httptest.NewServer(h)
	defer srv.Close()
	ft := newFakeTime()
	cfg := config(srv.URL + "/%s")
	cfg.RetryStrategy = []httpclient.RetryRule{rule(t, "500,502", 3, 2*time.Second), rule(t, "default", 0, 0)}
	resp, err := newClient(t, cfg, ft.opts()...).Do(t.Context(), httpclient.Request{URL: "x"})
	if err != nil || resp.Status != 200 || resp.Attempts != 4 || n.Load() != 4 {
		t.Fatalf("%+v %v (%d requests)", resp, err, n.Load())
	}
	if got := ft.Sleeps(); len(got) != 3 || got[0] != 2*time.Second {
		t.Fatalf("sleeps %v", got)
	}

	// The most specific key wins: 502 has its own rule without retries.
	h, n = flaky(502, 502)
	srv2 := httptest.NewServer(h)
	defer srv2.Close()
	cfg = config(srv2.URL + "/%s")
	cfg.RetryStrategy = []httpclient.RetryRule{rule(t, "500-599", 5, time.Second), rule(t, "502", 0, 0)}
	resp, err = newClient(t, cfg, newFakeTime().opts()...).Do(t.Context(), httpclient.Request{URL: "x"})
	if err != nil || resp.Status != 502 || n.Load() != 1 {
		t.Fatalf("specific key: %+v %v", resp, err)
	}

	// "default" covers other 4xx/5xx; 2xx/3xx are never retried.
	h, n = flaky(404, 201)
	srv3 := httptest.NewServer(h)
	defer srv3.Close()
	cfg = config(srv3.URL + "/%s")
	cfg.RetryStrategy = []httpclient.RetryRule{rule(t, "default", 1, time.Second)}
	resp, err = newClient(t, cfg, newFakeTime().opts()...).Do(t.Context(), httpclient.Request{URL: "x"})
	if err != nil || resp.Status != 201 || n.Load() != 2 {
		t.Fatalf("default: %+v %v", resp, err)
	}
}

func TestRetriesExhaustedReturnsLastResponse(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(503)
		_, _ = io.WriteString(w, `{"error":"down for maintenance","detail":"`+strings.Repeat("x", 400)+`"}`)
	}))
	defer srv.Close()
	cfg := config(srv.URL + "/%s")
	cfg.RetryStrategy = []httpclient.RetryRule{rule(t, "500-599", 2, time.Second)}
	resp, err := newClient(t, cfg, newFakeTime().opts()...).Do(t.Context(), httpclient.Request{Method: "PUT", URL: "items/1?api_key=planted", Body: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 503 || resp.Attempts != 3 || n.Load() != 3 {
		t.Fatalf("%d after %d attempts", resp.Status, resp.Attempts)
	}
	err = resp.Err(nil)
	var se *httpclient.StatusError
	if !errors.As(err, &se) || se.Status != 503 {
		t.Fatalf("Err: %v", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "PUT "+srv.URL+"/items/1?api_key=REDACTED: status 503 Service Unavailable: {\"error\":\"down") ||
		!strings.HasSuffix(msg, "...") || len(se.Body) > httpclient.StatusErrorBodyLimit+3 {
		t.Fatalf("message %q", msg)
	}
	if resp.Err(func(s int) bool { return s == 503 }) != nil {
		t.Fatal("allowed status rejected")
	}
}

func TestTransportErrorsRetryUnderDefault(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	cfg := config("http://" + addr + "/%s")
	cfg.RetryStrategy = []httpclient.RetryRule{rule(t, "default", 2, time.Second)}
	ft := newFakeTime()
	_, err = newClient(t, cfg, ft.opts()...).Do(t.Context(), httpclient.Request{URL: "x"})
	var te *httpclient.TransportError
	if !errors.As(err, &te) || te.Attempts != 3 || len(ft.Sleeps()) != 2 {
		t.Fatalf("err %v (sleeps %v)", err, ft.Sleeps())
	}
	if !strings.Contains(err.Error(), "connection refused") || !strings.HasPrefix(err.Error(), "system sys1: GET http://") {
		t.Fatalf("message %q", err)
	}
}

func TestTLSVerification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(echo))
	defer srv.Close()
	_, err := newClient(t, config(srv.URL+"/%s")).Do(t.Context(), httpclient.Request{URL: "x"})
	var te *httpclient.TransportError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("self-signed accepted or wrong error: %v", err)
	}
	cfg := config(srv.URL + "/%s")
	cfg.InsecureSkipVerify = true
	if resp, err := newClient(t, cfg).Do(t.Context(), httpclient.Request{URL: "x"}); err != nil || resp.Status != 200 {
		t.Fatalf("verify_ssl false: %v %v", resp, err)
	}
	cfg = config(srv.URL + "/%s")
	cfg.CustomCAPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	if resp, err := newClient(t, cfg).Do(t.Context(), httpclient.Request{URL: "x"}); err != nil || resp.Status != 200 {
		t.Fatalf("custom CA: %v %v", resp, err)
	}
	cfg.CustomCAPEM = "not pem"
	if _, err := httpclient.New(cfg); err == nil || !strings.Contains(err.Error(), "custom_ca_pem_chain") {
		t.Fatalf("bad PEM: %v", err)
	}
}

func oauthServer(t *testing.T, opts fakeapi.Options) (*fakeapi.API, *httptest.Server) {
	t.Helper()
	opts.Auth = fakeapi.AuthBearer
	opts.ClientID, opts.ClientSecret = "cid", "client-secret-planted"
	if opts.Seed == nil {
		opts.Seed = map[string]int{"customers": 5}
	}
	api := fakeapi.New(opts)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return api, srv
}

func TestClientCredentialsTokenFetchedOnceAndReused(t *testing.T) {
	api, srv := oauthServer(t, fakeapi.Options{})
	cfg := config(srv.URL + "/api/%s")
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthOAuth2ClientCredentials, OAuth2: httpclient.OAuth2{
		TokenURL: srv.URL + "/oauth/token", ClientID: "cid", ClientSecret: "client-secret-planted", Scopes: []string{"read"},
		RefreshWindow: 30 * time.Second}}
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for range 12 {
		wg.Go(func() {
			resp, err := c.Do(t.Context(), httpclient.Request{URL: "customers"})
			if err != nil || resp.Status != 200 {
				failures.Add(1)
			}
		})
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d failures", failures.Load())
	}
	if got := api.Stats().TokensIssued; got != 1 {
		t.Fatalf("tokens issued %d, want 1", got)
	}
	// An expired token (server side) is replaced after the 401, once.
	api.ExpireAccessTokens()
	if resp, err := c.Do(t.Context(), httpclient.Request{URL: "customers"}); err != nil || resp.Status != 200 || resp.Attempts != 2 {
		t.Fatalf("after expiry: %+v %v", resp, err)
	}
	if got := api.Stats().TokensIssued; got != 2 {
		t.Fatalf("tokens issued %d, want 2", got)
	}
	// Bad client secret: an AuthError, no request to /api.
	cfg.Auth.OAuth2.ClientSecret = "wrong-secret"
	_, err := newClient(t, cfg).Do(t.Context(), httpclient.Request{URL: "customers"})
	var ae *httpclient.AuthError
	if !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "oauth2: fetching token for system sys1: ") ||
		!strings.Contains(err.Error(), "invalid_client") || strings.Contains(err.Error(), "wrong-secret") {
		t.Fatalf("bad client: %v", err)
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	// Tokens live 20 s; with a 30 s refresh window every request renews.
	api, srv := oauthServer(t, fakeapi.Options{TokenLifetime: 20 * time.Second})
	cfg := config(srv.URL + "/api/%s")
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthOAuth2ClientCredentials, OAuth2: httpclient.OAuth2{
		TokenURL: srv.URL + "/oauth/token", ClientID: "cid", ClientSecret: "client-secret-planted", RefreshWindow: 30 * time.Second}}
	c := newClient(t, cfg)
	for range 3 {
		if resp, err := c.Do(t.Context(), httpclient.Request{URL: "customers"}); err != nil || resp.Status != 200 {
			t.Fatal(resp, err)
		}
	}
	if got := api.Stats().TokensIssued; got != 3 {
		t.Fatalf("tokens issued %d, want 3", got)
	}
	if api.Stats().Unauthorized != 0 {
		t.Fatal("a request went out with an expiring token")
	}
}

func TestRefreshTokenFlowRefreshesOn401(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	api, srv := oauthServer(t, fakeapi.Options{RotateRefreshTokens: true})
	pair := api.IssueToken()
	cfg := config(srv.URL + "/api/%s")
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthOAuth2RefreshToken, OAuth2: httpclient.OAuth2{
		TokenURL: srv.URL + "/oauth/token", ClientID: "cid", ClientSecret: "client-secret-planted",
		AccessToken: pair.AccessToken, RefreshToken: pair.RefreshToken}}
	c := newClient(t, cfg, httpclient.WithLogger(logger))
	// The initial access token is used as is.
	if resp, err := c.Do(t.Context(), httpclient.Request{URL: "customers"}); err != nil || resp.Status != 200 || resp.Attempts != 1 {
		t.Fatalf("initial token: %+v %v", resp, err)
	}
	if api.Stats().TokensIssued != 0 {
		t.Fatal("token fetched although the initial one was valid")
	}
	for round := 1; round <= 2; round++ {
		api.ExpireAccessTokens()
		resp, err := c.Do(t.Context(), httpclient.Request{URL: "customers"})
		if err != nil || resp.Status != 200 || resp.Attempts != 2 {
			t.Fatalf("round %d: %+v %v", round, resp, err)
		}
		// The rotated refresh token was kept: the second round uses it.
		if got := api.Stats().TokensIssued; got != int64(round) {
			t.Fatalf("round %d: tokens issued %d", round, got)
		}
	}
	for _, secret := range []string{pair.AccessToken, pair.RefreshToken, "client-secret-planted"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log leaks %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "refreshing oauth2 token") {
		t.Fatalf("no refresh logged:\n%s", logs.String())
	}
}

func TestExpiredRefreshTokenError(t *testing.T) {
	api, srv := oauthServer(t, fakeapi.Options{})
	pair := api.IssueToken()
	api.RevokeRefreshToken(pair.RefreshToken)
	api.ExpireAccessTokens()
	cfg := config(srv.URL + "/api/%s")
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthOAuth2RefreshToken, OAuth2: httpclient.OAuth2{
		TokenURL: srv.URL + "/oauth/token", ClientID: "cid", ClientSecret: "client-secret-planted",
		AccessToken: pair.AccessToken, RefreshToken: pair.RefreshToken}}
	_, err := newClient(t, cfg).Do(t.Context(), httpclient.Request{URL: "customers"})
	var ae *httpclient.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("want AuthError, got %T %v", err, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "oauth2: refreshing token for system sys1: ") || !strings.Contains(msg, "invalid_grant") {
		t.Fatalf("message %q", msg)
	}
	if strings.Contains(msg, pair.RefreshToken) || strings.Contains(msg, pair.AccessToken) {
		t.Fatalf("message leaks a token: %q", msg)
	}
	// Without an initial access token the first request refreshes.
	cfg.Auth.OAuth2.AccessToken = ""
	if _, err := newClient(t, cfg).Do(t.Context(), httpclient.Request{URL: "customers"}); !errors.As(err, &ae) {
		t.Fatalf("no access token: %v", err)
	}
}

func TestRedaction(t *testing.T) {
	const secret = "planted-SECRET-9f3a"
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// A server that rate limits once, then fails and echoes credentials.
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.WriteHeader(429)
			return
		}
		w.WriteHeader(400)
		_, _ = io.WriteString(w, "bad token "+r.URL.Query().Get("token")+" with header "+r.Header.Get("X-Api-Key")+" and "+r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	cfg := config(srv.URL + "/1/%s?token=" + secret + "&key=" + secret)
	cfg.Headers = map[string]string{"X-Api-Key": secret}
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthBasic, Username: "user", Password: secret}
	ft := newFakeTime()
	c := newClient(t, cfg, append(ft.opts(), httpclient.WithLogger(logger))...)
	resp, err := c.Do(t.Context(), httpclient.Request{URL: "boards", Params: url.Values{"access_token": {secret}}})
	if err != nil {
		t.Fatal(err)
	}
	statusErr := resp.Err(nil)
	if statusErr == nil {
		t.Fatal("400 accepted")
	}

	// Transport error on a URL with userinfo and secret params.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg2 := config("http://user:" + secret + "@" + addr + "/%s?api_key=" + secret)
	_, transportErr := newClient(t, cfg2, httpclient.WithLogger(logger)).Do(t.Context(), httpclient.Request{URL: "x"})
	if transportErr == nil {
		t.Fatal("no transport error")
	}

	basic := base64.StdEncoding.EncodeToString([]byte("user:" + secret))
	for name, text := range map[string]string{"status error": statusErr.Error(), "transport error": transportErr.Error(), "logs": logs.String()} {
		if strings.Contains(text, secret) || strings.Contains(text, basic) {
			t.Errorf("%s leaks the secret:\n%s", name, text)
		}
		if !strings.Contains(text, "REDACTED") {
			t.Errorf("%s shows no redaction:\n%s", name, text)
		}
	}
	if !strings.Contains(logs.String(), "status=429") {
		t.Fatalf("retry not logged:\n%s", logs.String())
	}
	if got := httpclient.RedactURL("https://u:p@x/a?page=2&apiKey=s&Signature=t&since=2024#frag"); got != "https://REDACTED@x/a?page=2&apiKey=REDACTED&Signature=REDACTED&since=2024#frag" {
		t.Fatalf("RedactURL %q", got)
	}
}

// TestRedactionOfSecretsTheClientCannotSee: a secret in an operation URL
// (a query parameter of no telling name, or a path segment) is only known
// to the config's redactor (WithRedact); the error, its URL and the echoed
// body are redacted with it. A secret the snippet cut would split is
// replaced whole, not half shown.
func TestRedactionOfSecretsTheClientCannotSee(t *testing.T) {
	const secret = "opaque-value-7d1c2b"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		// The secret straddles the 300-byte snippet limit.
		io.WriteString(w, strings.Repeat("x", httpclient.StatusErrorBodyLimit-14)+"echo "+r.URL.String())
	}))
	defer srv.Close()
	red := func(s string) string { return strings.ReplaceAll(s, secret, "***") }
	c := newClient(t, config(srv.URL+"/%s"), httpclient.WithRedact(red))
	resp, err := c.Do(t.Context(), httpclient.Request{URL: secret + "/items?k=" + secret})
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.Err(nil).Error()
	if strings.Contains(msg, secret[:6]) || strings.Contains(c.RedactURL(resp.URL), secret) {
		t.Errorf("the error shows (part of) the secret: %s", msg)
	}
	if !strings.Contains(msg, "/***/items?k=***") {
		t.Errorf("URL not redacted in %s", msg)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	const limit, requests = 3, 12
	var inflight, maxInflight atomic.Int32
	gate := make(chan struct{})
	reached := make(chan struct{}, requests)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := maxInflight.Load()
			if n <= m || maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		reached <- struct{}{}
		<-gate
	}))
	defer srv.Close()
	cfg := config(srv.URL + "/%s")
	cfg.MaxConcurrency = limit
	c := newClient(t, cfg)
	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			if _, err := c.Do(t.Context(), httpclient.Request{URL: "x"}); err != nil {
				t.Error(err)
			}
		})
	}
	for range limit {
		<-reached
	}
	// Give excess requests every chance to slip through before opening.
	time.Sleep(50 * time.Millisecond)
	if got := inflight.Load(); got != limit {
		t.Fatalf("in flight %d, want %d", got, limit)
	}
	close(gate)
	wg.Wait()
	if got := maxInflight.Load(); got != limit {
		t.Fatalf("max in flight %d, want %d", got, limit)
	}
}

func TestContextCancel(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	defer srv.Close()
	c := newClient(t, config(srv.URL+"/%s"))
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	_, err := c.Do(ctx, httpclient.Request{URL: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("in flight: %v", err)
	}

	// Cancel during a Retry-After wait (real sleep of an hour).
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"c": 1}, Faults: fakeapi.Faults{RateLimitNext: 1, RetryAfter: "3600"}})
	srv2 := httptest.NewServer(api.Handler())
	defer srv2.Close()
	c = newClient(t, config(srv2.URL+"/api/%s"))
	ctx, cancel = context.WithCancel(t.Context())
	go func() {
		for api.Stats().RateLimited == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := c.Do(ctx, httpclient.Request{URL: "c"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("during wait: %v", err)
	}

	// A per-attempt timeout is a transport error.
	cfg := config(srv.URL + "/%s")
	cfg.Timeout = 20 * time.Millisecond
	go func() { <-arrived }()
	_, err = newClient(t, cfg).Do(t.Context(), httpclient.Request{URL: "x"})
	var te *httpclient.TransportError
	if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %T %v", err, err)
	}
}

func TestRequestsPerSecondLimiter(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"c": 1}})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	cfg := config(srv.URL + "/api/%s")
	cfg.RequestsPerSecond = 1000
	c := newClient(t, cfg)
	for range 5 {
		if resp, err := c.Do(t.Context(), httpclient.Request{URL: "c"}); err != nil || resp.Status != 200 {
			t.Fatal(resp, err)
		}
	}
	// A context that ends while waiting for a token aborts the wait.
	cfg.RequestsPerSecond = 0.001
	c = newClient(t, cfg)
	if _, err := c.Do(t.Context(), httpclient.Request{URL: "c"}); err != nil { // burst of 1
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, httpclient.Request{URL: "c"}); err == nil {
		t.Fatal("rate limit not applied")
	}
}

func TestNewValidates(t *testing.T) {
	cfg := config("https://x/%s")
	cfg.Auth = httpclient.Auth{Kind: httpclient.AuthOAuth2RefreshToken, OAuth2: httpclient.OAuth2{TokenURL: "not a url"}}
	cfg.RateLimitRetries = -1
	_, err := httpclient.New(cfg)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"oauth2.token_url", "oauth2.refresh_token", "rate_limiting_retries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func BenchmarkDoListPage1000(b *testing.B) {
	const n, limit = 100_000, 1000
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"customers": n}, LogLimit: -1})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	c, err := httpclient.New(config(srv.URL + "/api/%s"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var bytes int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		resp, err := c.Do(ctx, httpclient.Request{URL: "customers", Params: url.Values{
			"limit": {"1000"}, "page": {strconv.Itoa(i%(n/limit) + 1)}}})
		if err != nil || resp.Status != 200 {
			b.Fatal(resp, err)
		}
		bytes += int64(len(resp.Body))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*limit)/b.Elapsed().Seconds(), "records/s")
	b.SetBytes(bytes / int64(b.N))
}

func Test429PausesTheWholeClient(t *testing.T) {
	api := fakeapi.New(fakeapi.Options{Seed: map[string]int{"c": 1}, Faults: fakeapi.Faults{RateLimitNext: 1, RetryAfter: "7"}})
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	var (
		mu      sync.Mutex
		sleeps  []time.Duration
		first   = make(chan struct{})
		release = make(chan struct{})
	)
	sleep := func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		sleeps = append(sleeps, d)
		n := len(sleeps)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-release
		}
		return nil
	}
	fixed := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newClient(t, config(srv.URL+"/api/%s"), httpclient.WithSleep(sleep), httpclient.WithClock(func() time.Time { return fixed }))
	done := make(chan error, 1)
	go func() {
		resp, err := c.Do(t.Context(), httpclient.Request{URL: "c"})
		if err == nil && resp.Status != 200 {
			err = errors.New(resp.Err(nil).Error())
		}
		done <- err
	}()
	<-first // request A got its 429 and waits
	// Request B was never rate limited itself but waits for the pause too.
	if resp, err := c.Do(t.Context(), httpclient.Request{URL: "c"}); err != nil || resp.Status != 200 {
		t.Fatal(resp, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sleeps) != 2 || sleeps[0] != 7*time.Second || sleeps[1] != 7*time.Second {
		t.Fatalf("sleeps %v", sleeps)
	}
}
