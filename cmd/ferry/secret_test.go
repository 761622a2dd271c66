package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/httpapi"
	"github.com/ferrydata/ferry/engine/secrets"
)

// hitCounter counts requests by path and query.
type hitCounter struct {
	mu sync.Mutex
	m  map[string]int
}

func (h *hitCounter) get(k string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[k]
}

// fakeShop serves JSON arrays on 127.0.0.1 to requests that carry
// "Authorization: Bearer <token>", and 401 to others (and to /deny/).
func fakeShop(t *testing.T, token string) (*httptest.Server, *hitCounter) {
	t.Helper()
	hits := &hitCounter{m: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token || strings.HasPrefix(r.URL.Path, "/deny/") {
			http.Error(w, "not authorized", http.StatusUnauthorized)
			return
		}
		hits.mu.Lock()
		hits.m[r.URL.RequestURI()]++
		hits.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `[{"_id": "1", "name": "one"}, {"_id": "2", "name": "two"}]`)
	}))
	t.Cleanup(srv.Close)
	return srv, hits
}

func TestSecretCommands(t *testing.T) {
	data := t.TempDir()
	d := "--data=" + data
	if code, out, _ := runCLI(t, "secret", "list", d); code != exitOK || !strings.Contains(out, "no secrets") {
		t.Errorf("list on no store: %d %s", code, out)
	}
	// Usage errors: a value on the command line (shell history), an empty
	// value, a bad name, an unknown subcommand, a missing NAME.
	for _, args := range [][]string{{"secret", "set", "x"}, {"secret", "set", "x", "v"}, {"secret", "set", "x", "v", "--stdin"}, {"secret", "set", "a/b"}, {"secret", "frob"}, {"secret", "rm"}} {
		if code, _, _ := runCLI(t, append(args, d)...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCLIWith(t, runOpts{stdin: "v"}, "secret", "set", "x", "v", d); code != exitUsage || !strings.Contains(errOut, "a value on the command line is refused") {
		t.Errorf("value on the command line: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "secret", "frb", d); code != exitUsage || !strings.Contains(errOut, `unknown command "frb" for "ferry secret"`) {
		t.Errorf("unknown subcommand: %d %s", code, errOut)
	}
	// Without a subcommand: its help, on stdout.
	if code, out, _ := runCLI(t, "secret", d); code != exitOK || !strings.Contains(out, "ferry secret [command]") {
		t.Errorf("secret alone: %d %s", code, out)
	}
	if code, out, errOut := runCLIWith(t, runOpts{stdin: "from-stdin\r\n"}, "secret", "set", "tok", "--stdin", "--system", "crm", d); code != exitOK || out != "set secret crm/tok\n" {
		t.Fatalf("set --stdin: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLIWith(t, runOpts{stdin: "global"}, "secret", "set", "tok", d); code != exitOK {
		t.Fatalf("set: %s", errOut)
	}
	fi, err := os.Stat(filepath.Join(data, secrets.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	code, out, _ := runCLI(t, "secret", "list", "--json", d)
	if code != exitOK || strings.TrimSpace(out) != "[\n  {\n    \"name\": \"tok\"\n  },\n  {\n    \"system\": \"crm\",\n    \"name\": \"tok\"\n  }\n]" {
		t.Errorf("list --json: %s", out)
	}
	// The value read from stdin lost its line ending only.
	st, err := boltstore.Open(data, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := secrets.Open(st, data, func(string) (string, bool) { return "", false }).Get(context.Background(), "crm", "tok")
	st.Close()
	if err != nil || v != "from-stdin" {
		t.Errorf("stored %q %v", v, err)
	}
	if code, out, _ := runCLI(t, "secret", "rm", "tok", "--system", "crm", d); code != exitOK || out != "removed secret crm/tok\n" {
		t.Errorf("rm: %d %s", code, out)
	}
	if code, _, errOut := runCLI(t, "secret", "rm", "tok", "--system", "crm", d); code != exitUsage || !strings.Contains(errOut, "no secret crm/tok") {
		t.Errorf("rm again: %d %s", code, errOut)
	}
	// Another key cannot read the secrets: the error says so.
	cfg := writeFiles(t, map[string]string{"c.json": `{"_id": "crm", "type": "system:url", "base_url": "http://x/", "authentication": "bearer", "token": "$SECRET(tok)"}`})
	code, _, errOut := runCLIWith(t, runOpts{env: map[string]string{secrets.KeyEnv: strings.Repeat("ab", 32)}}, "validate", cfg, d)
	if code != exitUsage || !strings.Contains(errOut, `system "crm": secret "tok"`) || !strings.Contains(errOut, "wrong key") {
		t.Errorf("wrong key: %d %s", code, errOut)
	}
	if code, out, errOut := runCLI(t, "validate", cfg, d); code != exitOK {
		t.Errorf("validate with the global secret: %d %s %s", code, out, errOut)
	}
}

// TestSecretErrors: $SECRET in a pipe names the pipe and pointer; an
// unknown secret names the system and the secret.
func TestSecretErrors(t *testing.T) {
	cfg := writeFiles(t, map[string]string{"c.json": `[
		{"_id": "crm", "type": "system:url", "base_url": "http://x/", "authentication": "bearer", "token": "$SECRET(nope)"},
		{"_id": "p", "type": "pipe", "source": {"type": "json", "system": "crm", "url": "x", "headers": {"k": "$SECRET(tok)"}}}]`})
	code, _, errOut := runCLI(t, "validate", cfg, "--data="+t.TempDir())
	if code != exitUsage {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{
		`c.json: /1/source/headers/k: pipe "p": $SECRET(tok) is only allowed in system configs`,
		`c.json: /0/token: system "crm": unknown secret "nope"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr:\n%s\nwant %q", errOut, want)
		}
	}
	// A secret that is not set yet only warns in validate; run needs it.
	only := writeFiles(t, map[string]string{"c.json": `[
		{"_id": "crm", "type": "system:url", "base_url": "http://x/", "authentication": "bearer", "token": "$SECRET(nope)"},
		{"_id": "p", "type": "pipe", "source": {"type": "json", "system": "crm", "url": "x"}}]`})
	code, _, errOut = runCLI(t, "validate", only, "--data="+t.TempDir())
	if code != exitOK || !strings.Contains(errOut, `warning: `) || !strings.Contains(errOut, `unknown secret "nope"`) {
		t.Errorf("validate with a missing secret = %d %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "run", only, "--data="+t.TempDir())
	if code != exitUsage || !strings.Contains(errOut, `error: `) || !strings.Contains(errOut, `unknown secret "nope"`) {
		t.Errorf("run with a missing secret = %d %s", code, errOut)
	}
}

// TestSecretsNeverLeak plants secret values, uses them for real (a bearer
// token an httptest server checks) and asserts they never appear in any
// command's output, the HTTP API, the run records or the bbolt file.
func TestSecretsNeverLeak(t *testing.T) {
	const planted = "PLANTED-s3cr3t-9f8e7d6c"
	const planted2 = "PLANTED-conn-4c3b2a19"
	srv, hits := fakeShop(t, planted)
	data, data2 := t.TempDir(), t.TempDir()
	d, d2 := "--data="+data, "--data="+data2
	var seen bytes.Buffer
	run := func(o runOpts, args ...string) int {
		t.Helper()
		code, out, errOut := runCLIWith(t, o, args...)
		seen.WriteString(out)
		seen.WriteString(errOut)
		return code
	}
	if code := run(runOpts{stdin: planted + "\n"}, "secret", "set", "tok", "--stdin", "--system", "crm", d); code != exitOK {
		t.Fatalf("secret set: %s", seen.String())
	}
	// crm-bad uses the global secret of the same name.
	if code := run(runOpts{stdin: planted}, "secret", "set", "tok", d); code != exitOK {
		t.Fatalf("secret set: %s", seen.String())
	}
	cfg := writeFiles(t, map[string]string{"c.json": `[
		{"_id": "crm", "type": "system:url", "base_url": "` + srv.URL + `/", "authentication": "bearer", "token": "$SECRET(tok)"},
		{"_id": "crm-bad", "type": "system:url", "base_url": "` + srv.URL + `/deny/", "authentication": "bearer", "token": "$SECRET(tok)"},
		{"_id": "crm-person", "type": "pipe", "source": {"type": "json", "system": "crm", "url": "persons.json"}},
		{"_id": "crm-denied", "type": "pipe", "source": {"type": "json", "system": "crm-bad", "url": "persons.json"}}]`})
	run(runOpts{}, "validate", cfg, d)
	run(runOpts{}, "validate", "--json", cfg, d)
	if code := run(runOpts{}, "run", cfg, "crm-person", d); code != exitOK {
		t.Fatalf("run: %s", seen.String())
	}
	if code := run(runOpts{}, "run", cfg, "--json", "--reset", d); code != exitFailed {
		t.Errorf("run with the denied pipe: exit %d, want 1", code)
	}
	run(runOpts{}, "pipes", cfg, d)
	run(runOpts{}, "pipes", cfg, "--json", d)
	run(runOpts{}, "pipe", "log", "crm-denied", d)
	run(runOpts{}, "pipe", "log", "crm-person", "--json", d)
	run(runOpts{}, "dataset", "show", "crm-person", "--json", d)
	run(runOpts{}, "secret", "list", d)
	run(runOpts{}, "secret", "list", "--json", d)
	if hits.get("/persons.json") == 0 {
		t.Fatal("the server never saw the planted bearer token: the secret was not used")
	}

	// The HTTP API over the plan (as ferry serve builds it).
	var apiLog bytes.Buffer
	c := newCLI(&apiLog, &apiLog)
	c.getenv = func(string) (string, bool) { return "", false }
	c.g.data, c.g.logFormat = data, "text"
	ctx := context.Background()
	plan, _, err := c.loadPlan(ctx, "", []string{cfg}, false)
	if err != nil {
		t.Fatalf("loadPlan: %v %s", err, apiLog.String())
	}
	store, err := c.openStore(false, false)
	if err != nil {
		t.Fatal(err, apiLog.String())
	}
	eng := engine.New(store, plan, c.logger())
	const apiToken = "api-token-of-the-test"
	h, err := httpapi.New(eng, httpapi.Options{Token: apiToken, UI: true})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(h)
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/pipes"}, {"GET", "/api/pipes/crm-person"}, {"GET", "/api/pipes/crm-denied"},
		{"POST", "/api/pipes/crm-person/run?reset=true"}, {"POST", "/api/pipes/crm-denied/run"},
		{"GET", "/api/pipes/crm-person/runs"}, {"GET", "/api/pipes/crm-denied/runs"},
		{"GET", "/api/datasets"}, {"GET", "/api/datasets/crm-person/entities?history=true"},
	} {
		r, err := http.NewRequest(req.method, api.URL+req.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+apiToken)
		r.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen.Write(body)
	}
	api.Close()
	recs, err := store.Runs(ctx, "", 1000)
	if err != nil || len(recs) < 4 {
		t.Fatalf("runs: %d %v", len(recs), err)
	}
	rj, _ := json.Marshal(recs)
	seen.Write(rj)
	seen.Write(apiLog.Bytes())
	store.Close()
	if !strings.Contains(string(rj), "401") {
		t.Errorf("the denied pipe's failure is not in the run records: %s", rj)
	}

	// expand and connect of a connector whose system uses $SECRET.
	conn := shopConnector(t, nil)
	run(runOpts{}, "expand", conn, "--system", "shop")
	run(runOpts{}, "connect", conn, "--system", "shop", "--param", "region=eu", "--param", "base_url="+srv.URL+"/",
		"--secret", "api_token="+planted2, d2)
	run(runOpts{}, "connectors", d2)
	run(runOpts{}, "connectors", "--json", d2)
	run(runOpts{}, "validate", writeFiles(t, map[string]string{"x.json": "[]"}), d2)
	run(runOpts{}, "run", d2)
	run(runOpts{}, "secret", "list", d2)
	run(runOpts{}, "disconnect", "shop", "--purge", d2)

	for _, p := range []string{planted, planted2} {
		if i := strings.Index(seen.String(), p); i >= 0 {
			t.Errorf("planted value %q leaked: ...%s...", p, seen.String()[max(0, i-200):i+len(p)])
		}
	}
	if seen.Len() < 2000 {
		t.Errorf("captured only %d bytes: the commands did not run", seen.Len())
	}
	for _, dir := range []string{data, data2} {
		db, err := os.ReadFile(filepath.Join(dir, boltstore.FileName))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(db, []byte(planted)) || bytes.Contains(db, []byte(planted2)) {
			t.Errorf("%s contains a planted plaintext", dir)
		}
	}
}
