package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestFakeAPICommand starts `ferry fake-api` on a free port, lists a
// seeded collection over HTTP, then cancels the context (as SIGINT does)
// and expects a clean exit.
func TestFakeAPICommand(t *testing.T) {
	pr, pw := io.Pipe()
	var stderr strings.Builder
	c := newCLI(pw, &stderr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- c.run(ctx, []string{"fake-api", "--addr", "127.0.0.1:0", "--seed", "customers=7,things=2"})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the banner: %v (stderr %s)", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	fields := strings.Fields(line)
	if len(fields) < 5 || !strings.Contains(line, "customers, things") {
		t.Fatalf("banner %q", line)
	}
	resp, err := http.Get(fields[4] + "/api/customers")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Data  []map[string]any `json:"data"`
		Total int              `json:"total"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || body.Total != 7 || len(body.Data) != 7 {
		t.Errorf("list = %+v, %v", body, err)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit code %d, stderr %s", code, stderr.String())
	}
}

func TestFakeAPIBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--seed", "customers"}, {"--auth", "digest"}, {"--paging", "weird"}} {
		code, _, errOut := runCLI(t, append([]string{"fake-api", "--addr", "127.0.0.1:0"}, args...)...)
		if code != exitUsage || !strings.Contains(errOut, "fake-api") {
			t.Errorf("%v = %d %s", args, code, errOut)
		}
	}
}
