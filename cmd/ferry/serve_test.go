package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a
// running command and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServe runs `ferry serve` on the demo, drives a pipe through the HTTP
// API, checks that its reader is signalled, and stops it as SIGINT would
// (context cancellation): serve exits 0 and the store is readable after.
func TestServe(t *testing.T) {
	data := t.TempDir()
	var stdout, stderr syncBuffer
	c := newCLI(&stdout, &stderr)
	c.getenv = func(name string) (string, bool) {
		if name == "crm_export" {
			return "../data/persons-day1.json", true
		}
		return "", false
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- c.run(ctx, []string{"serve", demo + "/config", "--data", data, "--addr", "127.0.0.1:0"})
	}()

	addrRe := regexp.MustCompile(`API on http://([0-9.:]+)/`)
	var base string
	for deadline := time.Now().Add(30 * time.Second); base == ""; {
		if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The token was generated into the data directory (0600) and shown
	// once, with how to use it.
	tokb, err := os.ReadFile(filepath.Join(data, "api.token"))
	if err != nil {
		t.Fatalf("no generated token: %v\n%s", err, stderr.String())
	}
	token := strings.TrimSpace(string(tokb))
	if fi, _ := os.Stat(filepath.Join(data, "api.token")); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if n := strings.Count(stderr.String(), token); n != 1 || !strings.Contains(stderr.String(), "Authorization: Bearer <token>") {
		t.Errorf("the token is shown %d times (want once, with how to use it):\n%s", n, stderr.String())
	}
	post := func(path string, hdr ...string) *http.Response {
		req, _ := http.NewRequest("POST", base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Without the token, or as a cross-site form, nothing runs.
	for _, hdr := range [][]string{
		{"Content-Type", "application/json"},
		{"Content-Type", "application/x-www-form-urlencoded", "Authorization", "Bearer " + token},
		{"Content-Type", "application/json", "Authorization", "Bearer " + token, "Origin", "http://evil.example"},
	} {
		resp := post("/api/pipes/crm-person-collect/run", hdr...)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("run with %q: %d, want 401/403", hdr, resp.StatusCode)
		}
	}
	resp := post("/api/pipes/crm-person-collect/run", "Content-Type", "application/json", "Authorization", "Bearer "+token)
	var rec struct {
		Written int `json:"written"`
		Error   string
	}
	json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || rec.Written != 4 {
		t.Fatalf("run through the API: %d %+v", resp.StatusCode, rec)
	}
	// person-golden reads that dataset and is signalled by the change (its
	// own schedule would only run it after 30 s).
	for deadline := time.Now().Add(10 * time.Second); ; {
		req, _ := http.NewRequest("GET", base+"/api/datasets/person-golden", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		r, err := http.DefaultClient.Do(req)
		if err == nil {
			var info struct{ Entities int }
			json.NewDecoder(r.Body).Decode(&info)
			r.Body.Close()
			if info.Entities == 3 {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("person-golden was not signalled by the API-triggered run")
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", base+"/api/datasets/crm-person-collect/entities?format=ndjson", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(r.Body)
	r.Body.Close()
	if n := strings.Count(body.String(), "\n"); n != 4 || r.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("ndjson entities: %d lines, %s", n, r.Header.Get("Content-Type"))
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after cancellation")
	}
	// The store was closed cleanly: it opens and holds the runs.
	code, out, errOut := runCLI(t, "pipe", "log", "crm-person-collect", "--json", "--data", data)
	if code != exitOK || !strings.Contains(out, `"written": 4`) {
		t.Errorf("pipe log after serve: %d %s %s", code, out, errOut)
	}
}

// TestServeRefusesOffLoopbackWithoutToken: an address other than loopback
// is refused without authentication (--no-auth) or with a short token,
// before anything listens.
func TestServeRefusesOffLoopbackWithoutToken(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--addr", "0.0.0.0:0", "--no-auth"}, "", "without an API token"},
		{[]string{"--addr", ":0", "--no-auth"}, "", "without an API token"},
		{[]string{"--addr", "0.0.0.0:0"}, "short", "API token of 5 characters"},
	} {
		var stdout, stderr syncBuffer
		cl := newCLI(&stdout, &stderr)
		cl.getenv = func(name string) (string, bool) {
			if name == "FERRY_API_TOKEN" && c.env != "" {
				return c.env, true
			}
			if name == "crm_export" {
				return "../data/persons-day1.json", true
			}
			return "", false
		}
		args := append([]string{"serve", demo + "/config", "--data", t.TempDir()}, c.args...)
		if code := cl.run(context.Background(), args); code != exitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("serve %q: exit %d, stderr %q; want exit 2 and %q", c.args, code, stderr.String(), c.want)
		}
	}
}

// TestServeKeepsNoUnshownToken: a start that fails before it prints the
// generated token (here: a bad config) leaves no token file behind, so
// the next start generates one and shows it.
func TestServeKeepsNoUnshownToken(t *testing.T) {
	data := t.TempDir()
	cfg := writeFiles(t, map[string]string{"bad.json": `[{"_id": "p", "type": "pipe", "source": {"type": "nope"}}]`})
	if code, _, errOut := runCLI(t, "serve", cfg, "--data", data, "--addr", "127.0.0.1:0"); code != exitUsage {
		t.Fatalf("serve of a bad config: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "api.token")); !os.IsNotExist(err) {
		t.Errorf("a token nobody saw was kept: %v", err)
	}
}
