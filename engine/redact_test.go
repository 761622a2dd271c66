package engine_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
)

// TestRedactorForms: a secret is caught as it is and in the forms it
// takes in output: JSON-escaped, URL-escaped, and inside base64 whatever
// precedes it (Basic authorization of user:secret).
func TestRedactorForms(t *testing.T) {
	const secret = `s3cr/et+"pa$$w&rd<x>`
	var r engine.Redactor
	r.Add(secret, "ab", "  ")
	jsonEsc, _ := json.Marshal(secret)
	texts := map[string]string{
		"raw":         "key=" + secret + ";",
		"json":        `{"error":` + string(jsonEsc) + `}`,
		"query":       "https://api.example.com/items?k=" + url.QueryEscape(secret) + "&page=2",
		"path":        "https://api.example.com/" + url.PathEscape(secret) + "/items",
		"basic":       "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+secret)),
		"basic-long":  "Basic " + base64.StdEncoding.EncodeToString([]byte("a-longer-user:"+secret)),
		"basic-2":     base64.StdEncoding.EncodeToString([]byte("us:" + secret + ":tail")),
		"base64url":   base64.URLEncoding.EncodeToString([]byte("x" + secret)),
		"bare-base64": base64.StdEncoding.EncodeToString([]byte(secret)),
	}
	for name, text := range texts {
		got := r.Redact(text)
		if got == text || !strings.Contains(got, engine.Redacted) {
			t.Errorf("%s: %q not redacted", name, text)
		}
		if strings.Contains(got, secret) || strings.Contains(got, string(jsonEsc[1:len(jsonEsc)-1])) || strings.Contains(got, url.QueryEscape(secret)) {
			t.Errorf("%s: %q still holds the secret", name, got)
		}
		for skip := range 3 {
			rest := secret[skip:]
			b := base64.StdEncoding.EncodeToString([]byte(rest[:len(rest)/3*3]))
			if strings.Contains(got, b) {
				t.Errorf("%s: %q still holds base64 %q", name, got, b)
			}
		}
	}
	if got := r.Redact("ab and spaces"); got != "ab and spaces" {
		t.Errorf("short values are redacted: %q", got)
	}
	var nilRed *engine.Redactor
	if nilRed.Redact(secret) != secret || !nilRed.Empty() || nilRed.Error(nil) != nil {
		t.Error("a nil Redactor must redact nothing")
	}

	cause := errors.New("GET /x?k=" + secret + ": 500")
	err := r.Error(cause)
	if strings.Contains(err.Error(), secret) || !errors.Is(err, cause) {
		t.Errorf("Error: %q (is cause: %v)", err, errors.Is(err, cause))
	}
	if plain := errors.New("nothing secret"); r.Error(plain) != plain {
		t.Error("an error without a secret should be returned as is")
	}

	var buf bytes.Buffer
	w := r.Writer(&buf)
	if n, err := w.Write([]byte("log " + secret + "\n")); err != nil || n != len("log "+secret+"\n") {
		t.Errorf("Write = %d, %v", n, err)
	}
	if buf.String() != "log ***\n" {
		t.Errorf("writer wrote %q", buf.String())
	}
}

// TestRunErrorIsRedactedEverywhere: a run whose error holds a resolved
// secret stores, logs and returns it redacted (RunRecord.Error,
// PipeState.LastError, the error).
func TestRunErrorIsRedactedEverywhere(t *testing.T) {
	const secret = "sk_live_0123456789abcdef"
	src := &fakeSource{N: 3}
	fn := funcTransform(func(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
		return nil, errors.New("upstream said: bad key " + secret + " (" + base64.StdEncoding.EncodeToString([]byte("me:"+secret)) + ")")
	})
	cfg := loadConfig(t, `{"_id":"p","type":"pipe","source":{"type":"fake"},"transform":{"type":"func"}}`)
	cfg.Redactor = &engine.Redactor{}
	cfg.Redactor.Add(secret)
	plan, err := engine.Compile(cfg, registry(src, fn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Redactor != cfg.Redactor {
		t.Fatal("Compile did not hand the config's Redactor to the plan")
	}
	s := openStore(t)
	var logBuf bytes.Buffer
	eng := engine.New(s, plan, newTextLogger(&logBuf))
	rec, err := eng.Run(context.Background(), "p", engine.RunOptions{})
	if err == nil {
		t.Fatal("the run should fail")
	}
	st, _ := s.PipeState(context.Background(), "p")
	runs, _ := s.Runs(context.Background(), "p", 1)
	b64 := base64.StdEncoding.EncodeToString([]byte("me:" + secret))
	for what, text := range map[string]string{"error": err.Error(), "record": rec.Error, "state": st.LastError, "stored run": runs[0].Error, "log": logBuf.String()} {
		if strings.Contains(text, secret) || strings.Contains(text, b64[4:20]) {
			t.Errorf("%s holds the secret: %s", what, text)
		}
		if !strings.Contains(text, "bad key ***") {
			t.Errorf("%s lost its message: %s", what, text)
		}
	}
}

// TestZeroTimesAreOmitted: times that are not known yet are left out of
// JSON instead of showing as 0001-01-01T00:00:00Z.
func TestZeroTimesAreOmitted(t *testing.T) {
	for _, v := range []any{engine.PipeState{}, engine.DatasetInfo{Name: "x"}, engine.RunRecord{Pipe: "p"}} {
		b, _ := json.Marshal(v)
		if bytes.Contains(b, []byte("0001-01-01")) {
			t.Errorf("%T: %s", v, b)
		}
	}
}
