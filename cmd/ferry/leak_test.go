package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/secrets"
)

// plantedSecrets are stored with the secret store and used, through
// $SECRET(name), in every place a system config can hold one.
var plantedSecrets = map[string]string{
	"hdr":    "Hdr-S3cret.value_5a4b",       // header with a telling name (X-Api-Key)
	"tenant": "Tenant-S3cret-77e1c0",        // header with no telling name (X-Tenant)
	"pw":     "pw:S3cret!e8d2+9",            // basic auth password
	"path":   "PathS3cret-0c9f3e1a",         // url_pattern path segment
	"q":      "q-S3cr.et_val~2b7",           // operation URL query, no telling name
	"body":   `Body"S3cret<1f2e>`,           // payload template
	"cs":     "client+S3cret/7c6d=",         // OAuth2 client_secret
	"rt":     "refresh-S3cret-token-b9a8d7", // OAuth2 refresh_token
}

// leakServer is the upstream API: it checks every planted credential and
// answers items; paths under /fail answer 500 and echo the request back
// (URL, headers, body), as careless APIs do; the OAuth2 token endpoint
// under /oauth/fail refuses and echoes the client secret.
func leakServer(t *testing.T) *httptest.Server {
	t.Helper()
	s := plantedSecrets
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/oauth/fail"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":"invalid_client","error_description":"client secret %s / %s / %s not accepted"}`,
				s["cs"], r.Header.Get("Authorization"), string(body))
			return
		case strings.HasPrefix(r.URL.Path, "/oauth/token"):
			r.ParseForm()
			form, _ := url.ParseQuery(string(body))
			user, pass, _ := r.BasicAuth()
			okClient := pass == s["cs"] || form.Get("client_secret") == s["cs"]
			okRefresh := form.Get("refresh_token") == s["rt"]
			if !okClient && !okRefresh {
				http.Error(w, "bad client "+user, 401)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"issued-access-token-5f4e3d2c","token_type":"bearer","expires_in":3600}`)
			return
		}
		if strings.Contains(r.URL.Path, "/fail") {
			w.WriteHeader(500)
			// Short enough that every planted value lies within the
			// error's 300-byte snippet.
			fmt.Fprintf(w, "echo a=%s x=%s t=%s u=%s b=%s", r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"),
				r.Header.Get("X-Tenant"), r.URL.RequestURI(), body)
			return
		}
		user, pass, basic := r.BasicAuth()
		switch {
		case basic && (user != "ferry-user" || pass != s["pw"]):
			http.Error(w, "bad basic auth", 401)
			return
		case !basic && r.Header.Get("Authorization") != "Bearer issued-access-token-5f4e3d2c":
			http.Error(w, "bad bearer token", 401)
			return
		case r.Header.Get("X-Api-Key") != s["hdr"] || r.Header.Get("X-Tenant") != s["tenant"]:
			http.Error(w, "bad headers", 401)
			return
		case !strings.Contains(r.URL.Path, "/"+s["path"]+"/") || r.URL.Query().Get("k") != s["q"]:
			http.Error(w, "bad url", 404)
			return
		case !payloadHas(body, s["body"]):
			http.Error(w, "bad body "+string(body), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[{"id":"1","name":"one"},{"id":"2","name":"two"}]`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func payloadHas(body []byte, want string) bool {
	var p struct{ Auth string }
	return json.Unmarshal(body, &p) == nil && p.Auth == want
}

// leakConfig: three REST systems (basic auth, OAuth2 client credentials,
// OAuth2 refresh token, each with the secret headers, URL path, query and
// payload) with a pipe that succeeds and one whose upstream fails and
// echoes the request; and a system whose token endpoint refuses.
func leakConfig(base string) string {
	ops := `"operations": {
	  "ok": {"method": "POST", "url": "items?k=$SECRET(q)", "payload": {"auth": "$SECRET(body)"}, "id_expression": "{{ id }}"},
	  "bad": {"method": "POST", "url": "fail?k=$SECRET(q)", "payload": {"auth": "$SECRET(body)"}, "id_expression": "{{ id }}"}}`
	headers := `"headers": {"X-Api-Key": "$SECRET(hdr)", "X-Tenant": "$SECRET(tenant)"}`
	pattern := `"url_pattern": "` + base + `/api/$SECRET(path)/%s"`
	systems := map[string]string{
		"basic":   `"authentication": "basic", "username": "ferry-user", "password": "$SECRET(pw)"`,
		"cc":      `"oauth2": {"token_url": "` + base + `/oauth/token", "client_id": "ferry-client", "client_secret": "$SECRET(cs)"}`,
		"refresh": `"oauth2": {"token_url": "` + base + `/oauth/token", "client_id": "ferry-client", "refresh_token": "$SECRET(rt)"}`,
		"denied":  `"oauth2": {"token_url": "` + base + `/oauth/fail", "client_id": "ferry-client", "client_secret": "$SECRET(cs)"}`,
	}
	var parts []string
	for _, id := range []string{"basic", "cc", "refresh", "denied"} {
		parts = append(parts, `{"_id": "`+id+`", "type": "system:rest", `+pattern+`, `+headers+`, `+systems[id]+`, `+ops+`}`)
		for _, op := range []string{"ok", "bad"} {
			parts = append(parts, `{"_id": "`+id+`-`+op+`", "type": "pipe", "source": {"type": "rest", "system": "`+id+`", "operation": "`+op+`"}}`)
		}
	}
	return "[\n" + strings.Join(parts, ",\n") + "\n]"
}

// secretForms lists what must never appear: every planted value raw,
// JSON- and URL-escaped and in base64, and the Basic authorization.
func leakForms() map[string]string {
	forms := map[string]string{}
	for name, v := range plantedSecrets {
		forms[name] = v
		forms[name+" query-escaped"] = url.QueryEscape(v)
		j, _ := json.Marshal(v)
		forms[name+" json"] = string(j[1 : len(j)-1])
		forms[name+" base64"] = base64.StdEncoding.EncodeToString([]byte(v))
		forms[name+" base64url"] = base64.RawURLEncoding.EncodeToString([]byte(v))
	}
	forms["basic authorization"] = base64.StdEncoding.EncodeToString([]byte("ferry-user:" + plantedSecrets["pw"]))
	forms["oauth2 client authorization"] = base64.StdEncoding.EncodeToString([]byte("ferry-client:" + url.QueryEscape(plantedSecrets["cs"])))
	forms["issued access token"] = "issued-access-token-5f4e3d2c"
	return forms
}

// TestSecretsNeverLeaveAnyOutput plants secrets in every place a config
// can hold one (headers, URL path, query, payload template, basic auth,
// OAuth2 client secret and refresh token), uses them for real against an
// API that checks them, and lets failing calls echo them back. No output
// may hold one, raw, escaped or in base64: the stdout and stderr of
// validate, run, pipes, pipe log and serve, every API response and page of
// the server, its metrics, and the raw bbolt file. Before the engine's
// redactor, a secret in an operation URL was stored in the run log and
// served by the API, and echoed credentials were shown as they were.
func TestSecretsNeverLeaveAnyOutput(t *testing.T) {
	srv := leakServer(t)
	data := t.TempDir()
	ctx := context.Background()
	st, err := boltstore.Open(data, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sec := secrets.Open(st, data, func(string) (string, bool) { return "", false })
	for name, v := range plantedSecrets {
		if err := sec.Set(ctx, "", name, v); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	cfg := writeFiles(t, map[string]string{"leak.json": leakConfig(srv.URL)})
	d := "--data=" + data

	var outputs []string
	record := func(what, text string) { outputs = append(outputs, what+":\n"+text) }
	cli := func(args ...string) int {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		record(strings.Join(args[:min(3, len(args))], " "), out+errOut)
		return code
	}
	if code := cli("validate", cfg, d); code != exitOK {
		t.Fatalf("validate: %s", outputs[len(outputs)-1])
	}
	okPipes := []string{"basic-ok", "cc-ok", "refresh-ok"}
	badPipes := []string{"basic-bad", "cc-bad", "refresh-bad", "denied-ok", "denied-bad"}
	for _, p := range okPipes {
		if code := cli("run", cfg, p, d); code != exitOK {
			t.Fatalf("run %s (the secrets must work): %s", p, outputs[len(outputs)-1])
		}
	}
	for _, p := range badPipes {
		if code := cli("run", cfg, p, d); code != exitFailed {
			t.Errorf("run %s: exit %d, want 1", p, code)
		}
	}
	cli("run", cfg, "--json", "--reset", d)
	cli("pipes", cfg, d)
	cli("pipes", cfg, "--json", d)
	for _, p := range append(okPipes, badPipes...) {
		cli("pipe", "log", p, d)
		cli("pipe", "log", p, "--json", d)
	}
	cli("datasets", d)
	cli("dataset", "show", "basic-ok", "--json", d)

	// ferry serve: the API, the pages and the metrics.
	var stdout, stderr syncBuffer
	c := newCLI(&stdout, &stderr)
	c.getenv = func(string) (string, bool) { return "", false }
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	go func() { done <- c.run(sctx, []string{"serve", cfg, d, "--addr", "127.0.0.1:0"}) }()
	addrRe := regexp.MustCompile(`API on http://([0-9.:]+)/`)
	var base string
	for deadline := time.Now().Add(30 * time.Second); base == ""; time.Sleep(10 * time.Millisecond) {
		if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
		} else if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
	}
	tok, err := os.ReadFile(filepath.Join(data, "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		record(method+" "+path, string(b))
	}
	for _, p := range append(okPipes, badPipes...) {
		call("POST", "/api/pipes/"+p+"/run")
		call("GET", "/api/pipes/"+p)
		call("GET", "/api/pipes/"+p+"/runs")
		call("GET", "/ui/pipes/"+p)
	}
	for _, path := range []string{"/api/pipes", "/api/datasets", "/", "/ui/datasets", "/ui/datasets/basic-ok", "/metrics", "/ready"} {
		call("GET", path)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("serve exited %d", code)
	}
	record("serve stdout+stderr", stdout.String()+stderr.String())
	db, err := os.ReadFile(filepath.Join(data, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	record("bbolt file", string(db))

	all := strings.Join(outputs, "\n")
	if len(all) < 20000 || !strings.Contains(all, `"written": 2`) {
		t.Fatalf("the commands produced too little (%d bytes): the test did not exercise them", len(all))
	}
	for _, out := range outputs {
		for what, form := range leakForms() {
			if i := strings.Index(out, form); i >= 0 {
				t.Errorf("%s (%q) leaked in %s", what, form, out[:strings.Index(out, ":\n")])
			}
		}
	}
	// The failures were reported, redacted, not dropped.
	for _, p := range []string{"basic-bad", "denied-ok"} {
		code, out, _ := runCLI(t, "pipe", "log", p, "--json", d)
		if code != exitOK || !strings.Contains(out, "***") {
			t.Errorf("pipe log %s shows no redacted error: %s", p, out)
		}
	}
}
