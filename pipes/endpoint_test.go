package pipes_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes"
)

const endpointConfig = `[
 {"_id":"open","type":"pipe","source":{"type":"http_endpoint","allow_anonymous":true},
  "transform":{"type":"dtl","rules":{"default":[["copy","*"],["add","seen",true]]}}},
 {"_id":"signed","type":"pipe","source":{"type":"http_endpoint","webhook_secret":"s3cret"}},
 {"_id":"custom-header","type":"pipe","source":{"type":"http_endpoint","webhook_secret":"$SECRET(hook)","signature_header":"X-Signature"}},
 {"_id":"guarded","type":"pipe","source":{"type":"http_endpoint"}},
 {"_id":"crm-person-event","type":"pipe","permissions":[["allow",["group:Anonymous"],["write_data"]]],
  "source":{"type":"http_endpoint",
    "validation_expression":"{% if request_headers['X-Hook-Signature'] != hmacsha256digest(secret('hook'), request_body) %}bad signature{% endif %}"}},
 {"_id":"validated","type":"pipe","source":{"type":"http_endpoint","allow_anonymous":true,
    "validation_expression":"{% if request_json.kind != 'person' %}kind {{ request_json.kind }} refused{% endif %}"}},
 {"_id":"reader","type":"pipe","source":{"type":"dataset","dataset":"open"}}]`

type receiverEnv struct {
	*env
	url string
}

func newReceivers(t *testing.T, e *env, token string) *receiverEnv {
	t.Helper()
	mux := http.NewServeMux()
	hs := pipes.Receivers(e.eng, pipes.ReceiverOptions{
		APIToken: token,
		Secret: func(ctx context.Context, pipe, name string) (string, error) {
			if name == "hook" && pipe != "open" {
				return "k3y", nil
			}
			return "", errors.New("no such secret")
		},
	})
	if len(hs) != 6 {
		t.Fatalf("%d receivers, want 6", len(hs))
	}
	for pattern, h := range hs {
		mux.Handle(pattern, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &receiverEnv{env: e, url: srv.URL}
}

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// post sends body to a pipe's receiver and returns the status and the
// response text.
func (r *receiverEnv) post(pipe, body string, headers ...string) (int, string) {
	r.t.Helper()
	req, err := http.NewRequest("POST", r.url+"/api/receivers/"+pipe+"/entities", strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *receiverEnv) expect(status int, contains string, pipe, body string, headers ...string) {
	r.t.Helper()
	got, text := r.post(pipe, body, headers...)
	if got != status || !strings.Contains(text, contains) {
		r.t.Errorf("POST %s %s: %d %s; want %d containing %q", pipe, body, got, text, status, contains)
	}
}

func TestHTTPEndpointWrites(t *testing.T) {
	e := setup(t, endpointConfig, map[string]string{})
	r := newReceivers(t, e, "")

	r.expect(200, `"written":1`, "open", `{"_id":"a","n":1.50}`)
	r.expect(200, `"written":2`, "open", `[{"_id":"b"},{"_id":"c","x":[1,2]}]`)
	if got := e.bodies("open"); got != `{"_id":"a","n":1.50,"seen":true}`+"\n"+`{"_id":"b","seen":true}`+"\n"+`{"_id":"c","seen":true,"x":[1,2]}` {
		t.Errorf("open = %s", got)
	}
	// The same entity again changes nothing; an update and a delete are
	// incremental writes.
	r.expect(200, `"unchanged":1`, "open", `{"_id":"a","n":1.50}`)
	r.expect(200, `"written":2`, "open", `[{"_id":"a","n":2},{"_id":"b","_deleted":true}]`)
	if got := values(e, "open"); got != "a= b=(deleted) c=" {
		t.Errorf("open = %s", got)
	}
	// Bad bodies write nothing.
	r.expect(400, "body is a string", "open", `"x"`)
	r.expect(400, "element 1 of the array is a number", "open", `[{"_id":"d"},5]`)
	r.expect(400, "not JSON", "open", `{"_id":`)
	r.expect(400, "element 1 has no string _id", "open", `[{"_id":"e"},{"no":"id"}]`)
	r.expect(400, "element 0 has no string _id", "open", `{"_id":7}`)
	if got := e.entity("open", "d") + e.entity("open", "e"); got != "" {
		t.Errorf("a refused request wrote %s", got)
	}

	// A pull run of an endpoint pipe reads nothing and deletes nothing,
	// even as its first (full) run; the pipe has no pump.
	p := e.eng.Plan.Pipe("open")
	if p.Pump.Mode != "off" {
		t.Errorf("pump mode = %q", p.Pump.Mode)
	}
	rec, err := e.run("open")
	if err != nil || rec.Read != 0 || rec.Deleted != 0 {
		t.Errorf("run = %+v %v", rec, err)
	}
	if got := values(e, "open"); got != "a= b=(deleted) c=" {
		t.Errorf("after run, open = %s", got)
	}
	// Readers see received entities.
	if rec := e.mustRun("reader"); rec.Written != 3 {
		t.Errorf("reader = %+v", rec)
	}
	// Receives are logged like runs.
	runs, err := e.store.Runs(context.Background(), "open", 20)
	if err != nil || len(runs) < 5 {
		t.Errorf("runs = %d %v", len(runs), err)
	}
	if _, err := e.eng.Receive(context.Background(), "reader", []engine.Entity{{"_id": "x"}}); err == nil {
		t.Error("Receive into a pull pipe succeeded")
	}
}

func TestHTTPEndpointAuth(t *testing.T) {
	e := setup(t, endpointConfig, map[string]string{})
	noToken := newReceivers(t, e, "")
	withToken := newReceivers(t, e, "t0ken")
	body := `{"_id":"a"}`

	// HMAC webhook secret.
	noToken.expect(200, `"written":1`, "signed", body, "X-Hub-Signature-256", "sha256="+sign("s3cret", body))
	noToken.expect(401, "bad signature", "signed", `{"_id":"b"}`, "X-Hub-Signature-256", "sha256="+sign("wrong", `{"_id":"b"}`))
	noToken.expect(401, "bad signature", "signed", `{"_id":"b"}`, "X-Hub-Signature-256", "sha256="+sign("s3cret", body)) // signature of another body
	noToken.expect(401, "missing signature header", "signed", `{"_id":"b"}`)
	withToken.expect(200, "", "signed", `{"_id":"c"}`, "Authorization", "Bearer t0ken")
	// $SECRET(name) resolved per request, configurable header.
	noToken.expect(200, "", "custom-header", body, "X-Signature", "sha256="+sign("k3y", body))
	noToken.expect(401, "X-Signature", "custom-header", body, "X-Hub-Signature-256", "sha256="+sign("k3y", body))

	// No anonymous writes: refused without a token configured, token
	// required with one.
	noToken.expect(403, "FERRY_API_TOKEN", "guarded", body)
	noToken.expect(403, "FERRY_API_TOKEN", "guarded", body, "Authorization", "Bearer t0ken")
	withToken.expect(401, "API token", "guarded", body)
	withToken.expect(401, "API token", "guarded", body, "Authorization", "Bearer nope")
	withToken.expect(200, "", "guarded", body, "Authorization", "Bearer t0ken")

	// permissions group:Anonymous write_data + a validation expression
	// checking an HMAC with secret() (sesam-py's use_webhook_secret).
	noToken.expect(200, "", "crm-person-event", body, "X-Hook-Signature", sign("k3y", body))
	noToken.expect(400, "rejected by validation_expression: bad signature", "crm-person-event", `{"_id":"z"}`, "X-Hook-Signature", sign("k3y", body))
	noToken.expect(400, "rejected by validation_expression: kind company refused", "validated", `{"_id":"v","kind":"company"}`)
	noToken.expect(200, "", "validated", `{"_id":"v","kind":"person"}`)

	if got := values(e, "signed"); got != "a= c=" {
		t.Errorf("signed = %s", got)
	}
	for ds, want := range map[string]string{"guarded": "a=", "crm-person-event": "a=", "validated": "v=", "custom-header": "a="} {
		if got := values(e, ds); got != want {
			t.Errorf("%s = %s, want %s", ds, got, want)
		}
	}
}

func TestHTTPEndpointRunRecord(t *testing.T) {
	e := setup(t, endpointConfig, map[string]string{})
	r := newReceivers(t, e, "")
	status, text := r.post("open", `[{"_id":"a"},{"_id":"b"}]`)
	var rec engine.RunRecord
	if err := json.Unmarshal([]byte(text), &rec); err != nil || status != 200 {
		t.Fatalf("%d %s %v", status, text, err)
	}
	if rec.Pipe != "open" || rec.Read != 2 || rec.Written != 2 || rec.SyncType != "incremental" {
		t.Errorf("record = %+v", rec)
	}
	info, ok, err := e.store.Dataset(context.Background(), "open")
	if err != nil || !ok || !info.Populated {
		t.Errorf("dataset = %+v %v %v (want populated)", info, ok, err)
	}
}
