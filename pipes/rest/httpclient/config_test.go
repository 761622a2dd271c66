package httpclient_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/pipes/rest/httpclient"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseSystemCorpusShapes(t *testing.T) {
	// superoffice-connector, after $ENV/$SECRET resolution.
	c, err := httpclient.ParseSystem(decode(t, `{
		"_id": "superoffice", "type": "system:rest",
		"oauth2": {"access_token": "AT", "client_id": "CID", "client_secret": "CS", "refresh_token": "RT",
		           "token_url": "https://auth.example/token", "scope": "a b", "extra": {"resource": "r"}},
		"rate_limiting_delay": 60, "rate_limiting_retries": 3, "worker_threads": 1,
		"url_pattern": "https://sod2.superoffice.com/acct/api/v1/%s", "verify_ssl": true,
		"operations": {"x": {"method": "GET", "url": "y"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.SystemID != "superoffice" || c.RateLimitDelay != time.Minute || c.RateLimitRetries != 3 || c.MaxConcurrency != 1 || c.InsecureSkipVerify {
		t.Fatalf("config %+v", c)
	}
	o := c.Auth.OAuth2
	if c.Auth.Kind != httpclient.AuthOAuth2RefreshToken || o.AccessToken != "AT" || o.RefreshToken != "RT" ||
		o.ClientID != "CID" || o.ClientSecret != "CS" || strings.Join(o.Scopes, ",") != "a,b" ||
		o.EndpointParams["resource"] != "r" || o.RefreshWindow != httpclient.DefaultRefreshWindow {
		t.Fatalf("oauth2 %+v", c.Auth)
	}

	// powerofficego: client credentials.
	c, err = httpclient.ParseSystem(decode(t, `{"_id": "pog", "oauth2": {"client_id": "app", "client_secret": "k",
		"token_url": "https://go.example/OAuth/Token"}, "url_pattern": "https://go.example/%s", "verify_ssl": "false"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Kind != httpclient.AuthOAuth2ClientCredentials || !c.InsecureSkipVerify {
		t.Fatalf("pog %+v", c)
	}
	if c.RateLimitRetries != httpclient.DefaultRateLimitRetries || c.RateLimitDelay != time.Second ||
		c.Timeout != 30*time.Second || c.MaxConcurrency != 4 {
		t.Fatalf("defaults %+v", c)
	}

	// zendesk: basic; wix/membercare: headers; jwt_token: bearer.
	c, err = httpclient.ParseSystem(decode(t, `{"_id": "z", "authentication": "basic", "username": "me@x/token",
		"password": "pw", "url_pattern": "https://x.zendesk.com/api/v2/%s", "headers": {"wix-site-id": "s", "n": 5},
		"read_timeout": 1.5, "connect_timeout": 2, "requests_per_second": 2.5}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Kind != httpclient.AuthBasic || c.Auth.Username != "me@x/token" || c.Auth.Password != "pw" ||
		c.Headers["wix-site-id"] != "s" || c.Headers["n"] != "5" || c.Timeout != 1500*time.Millisecond ||
		c.ConnectTimeout != 2*time.Second || c.RequestsPerSecond != 2.5 {
		t.Fatalf("zendesk %+v", c)
	}
	c, err = httpclient.ParseSystem(decode(t, `{"_id": "j", "jwt_token": "JWT", "base_url": "https://b/"}`))
	if err != nil || c.Auth.Kind != httpclient.AuthBearer || c.Auth.Token != "JWT" || c.URLPattern != "https://b/" {
		t.Fatalf("jwt %+v %v", c, err)
	}
}

func TestParseSystemRetryStrategy(t *testing.T) {
	c, err := httpclient.ParseSystem(decode(t, `{"_id": "s", "url_pattern": "https://x/%s", "retry_strategy": {
		"429": {"retries": 5, "delay": 2},
		"500,502": {"max_read_retries": 3, "read_retry_delay": 0.5},
		"400-428": 1,
		"default": {"retries": 2, "delay": 10, "write_retry_delay": 7}}}`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]httpclient.RetryRule{}
	for _, r := range c.RetryStrategy {
		got[r.Key] = r
	}
	if r := got["429"]; r.Retries != 5 || r.Delay != 2*time.Second || !r.Statuses.Contains(429) {
		t.Fatalf("429 %+v", r)
	}
	if r := got["500,502"]; r.Retries != 3 || r.Delay != 500*time.Millisecond || !r.Statuses.Contains(502) || r.Statuses.Contains(501) {
		t.Fatalf("500,502 %+v", r)
	}
	if r := got["400-428"]; r.Retries != 1 || !r.Statuses.Contains(404) || r.Statuses.Contains(429) || r.Statuses.String() != "400-428" {
		t.Fatalf("400-428 %+v", r)
	}
	if r := got["default"]; !r.Default || r.Retries != 2 || r.Delay != 10*time.Second || r.Settings["write_retry_delay"] != json.Number("7") {
		t.Fatalf("default %+v", r)
	}
}

func TestParseSystemErrorsNameTheKey(t *testing.T) {
	_, err := httpclient.ParseSystem(decode(t, `{"_id": "bad", "url_pattern": "https://x/%s",
		"worker_threads": 0, "rate_limiting_delay": "soon", "verify_ssl": "maybe", "headers": {"X": [1]},
		"retry_strategy": {"5xx": 1, "500": -1}, "authentication": "ntlm", "oauth2": {"scope": 3}}`))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"system bad: worker_threads", "rate_limiting_delay", "verify_ssl", "headers.X",
		"retry_strategy.5xx", "retry_strategy.500", "oauth2.scope", "oauth2: needs"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	var ce *httpclient.ConfigError
	if !errors.As(err, &ce) || ce.System != "bad" {
		t.Fatalf("not a ConfigError: %T", err)
	}
	_, err = httpclient.ParseSystem(decode(t, `{"_id": "n", "authentication": "digest", "username": "u"}`))
	if err == nil || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("digest: %v", err)
	}
	_, err = httpclient.ParseSystem(decode(t, `{"_id": "t", "tripletex": {"consumer_token": "c"}}`))
	if err == nil || !strings.Contains(err.Error(), "tripletex") {
		t.Fatalf("tripletex: %v", err)
	}
	// A secret-looking value must not be echoed in config errors.
	_, err = httpclient.ParseSystem(decode(t, `{"_id": "s", "rate_limiting_retries": "hunter2-secret"}`))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("echoed value: %v", err)
	}
}

func TestParseStatusSet(t *testing.T) {
	s, err := httpclient.ParseStatusSet("200-299, 404")
	if err != nil || !s.Contains(204) || !s.Contains(404) || s.Contains(403) {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range []string{"", "abc", "299-200", "99", "200,,300", "600"} {
		if _, err := httpclient.ParseStatusSet(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
