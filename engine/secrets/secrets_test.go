package secrets_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/secrets"
)

func openStore(t *testing.T, dir string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(dir, boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func noEnv(string) (string, bool) { return "", false }

func TestSetGetPrecedenceAndKeyFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	s := secrets.Open(st, dir, noEnv)
	if _, ok, err := s.Get(ctx, "crm", "token"); err != nil || ok {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	if _, err := os.Stat(filepath.Join(dir, secrets.KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a read created the key file: %v", err)
	}
	if err := s.Set(ctx, "", "token", "global-value"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, secrets.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if err := s.Set(ctx, "crm", "token", "crm-value"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ system, want string }{{"crm", "crm-value"}, {"erp", "global-value"}, {"", "global-value"}} {
		v, ok, err := s.Get(ctx, tc.system, "token")
		if err != nil || !ok || v != tc.want {
			t.Errorf("Get(%q) = %q %v %v, want %q", tc.system, v, ok, err, tc.want)
		}
	}
	refs, err := s.List(ctx)
	if err != nil || len(refs) != 2 || refs[0].String() != "token" || refs[1].String() != "crm/token" {
		t.Errorf("List = %v %v", refs, err)
	}
	// A second Store over the same data reads the key file.
	v, ok, err := secrets.Open(st, dir, noEnv).Get(ctx, "crm", "token")
	if err != nil || !ok || v != "crm-value" {
		t.Errorf("reopened Get = %q %v %v", v, ok, err)
	}
	if n, err := s.DeleteSystem(ctx, "crm"); err != nil || n != 1 {
		t.Errorf("DeleteSystem = %d %v", n, err)
	}
	if found, err := s.Delete(ctx, "", "token"); err != nil || !found {
		t.Errorf("Delete = %v %v", found, err)
	}
	if found, err := s.Delete(ctx, "", "token"); err != nil || found {
		t.Errorf("second Delete = %v %v", found, err)
	}
}

func TestEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openStore(t, dir)
	s := secrets.Open(st, dir, noEnv)
	const planted = "PLANTED-plaintext-0123456789"
	if err := s.Set(ctx, "crm", "a", planted); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "crm", "b", planted); err != nil {
		t.Fatal(err)
	}
	a, _, _ := st.GetKV(ctx, secrets.Namespace, "crm/a")
	b, _, _ := st.GetKV(ctx, secrets.Namespace, "crm/b")
	if bytes.Contains(a, []byte(planted)) || bytes.Equal(a[1:13], b[1:13]) {
		t.Errorf("value stored in the clear or nonce reused: %x %x", a, b)
	}
	// A value copied under another name does not authenticate.
	if err := st.PutKV(ctx, secrets.Namespace, "crm/c", a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "crm", "c"); !errors.Is(err, secrets.ErrDecrypt) {
		t.Errorf("moved value: err = %v, want ErrDecrypt", err)
	}
	st.Close()
	data, err := os.ReadFile(filepath.Join(dir, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(planted)) {
		t.Error("the bbolt file contains the plaintext")
	}
}

func TestKeyFromEnv(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	for _, text := range []string{hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		dir := t.TempDir()
		st := openStore(t, dir)
		env := func(n string) (string, bool) { return text, n == secrets.KeyEnv }
		if err := secrets.Open(st, dir, env).Set(ctx, "", "x", "v"); err != nil {
			t.Fatalf("key %q: %v", text, err)
		}
		if _, err := os.Stat(filepath.Join(dir, secrets.KeyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("key file created although %s is set", secrets.KeyEnv)
		}
		// Another key cannot read it; no key at all says so.
		other := func(n string) (string, bool) {
			return hex.EncodeToString(bytes.Repeat([]byte{8}, 32)), n == secrets.KeyEnv
		}
		if _, _, err := secrets.Open(st, dir, other).Get(ctx, "", "x"); !errors.Is(err, secrets.ErrDecrypt) {
			t.Errorf("wrong key: %v", err)
		}
		if _, _, err := secrets.Open(st, dir, noEnv).Get(ctx, "", "x"); !errors.Is(err, secrets.ErrNoKey) {
			t.Errorf("no key: %v", err)
		}
	}
	dir := t.TempDir()
	bad := func(n string) (string, bool) { return "too-short", n == secrets.KeyEnv }
	if err := secrets.Open(openStore(t, dir), dir, bad).Set(ctx, "", "x", "v"); err == nil || !strings.Contains(err.Error(), secrets.KeyEnv) {
		t.Errorf("bad key: %v", err)
	}
}

func TestKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	if err := os.WriteFile(filepath.Join(dir, secrets.KeyFile), []byte(key), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, secrets.KeyFile), 0o644)
	err := secrets.Open(st, dir, noEnv).Set(context.Background(), "", "x", "v")
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key file: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	dir := t.TempDir()
	s := secrets.Open(openStore(t, dir), dir, noEnv)
	for _, ref := range [][2]string{{"", "a/b"}, {"", ""}, {"", "-x"}, {"a/b", "x"}} {
		if err := s.Set(context.Background(), ref[0], ref[1], "v"); err == nil {
			t.Errorf("Set(%q, %q) accepted", ref[0], ref[1])
		}
	}
}

func TestResolve(t *testing.T) {
	cfg := &engine.Config{}
	cfg.AddComponents("c.json", []any{
		map[string]any{"_id": "crm", "type": "system:url", "headers": map[string]any{"X-Key": "k=$SECRET(key);"}, "token": "$SECRET(missing)"},
		map[string]any{"_id": "p", "type": "pipe", "source": map[string]any{"type": "embedded", "x": []any{"$SECRET(key)"}}},
		// The receiver resolves a whole-value webhook_secret per request.
		map[string]any{"_id": "crm-event", "type": "pipe", "source": map[string]any{"type": "http_endpoint", "webhook_secret": "$SECRET(hook)"}},
		map[string]any{"_id": "crm-event2", "type": "pipe", "source": map[string]any{"type": "http_endpoint", "webhook_secret": "x$SECRET(hook)"}},
	}, func(string) (string, bool) { return "", false })
	lookup := func(_ context.Context, system, name string) (string, bool, error) {
		if system == "crm" && name == "key" {
			return "VALUE", true, nil
		}
		return "", false, nil
	}
	red := secrets.Resolve(context.Background(), cfg, lookup)
	if got := cfg.Systems[0].Raw["headers"].(map[string]any)["X-Key"]; got != "k=VALUE;" {
		t.Errorf("resolved header = %v", got)
	}
	var msgs []string
	for _, d := range cfg.Diagnostics {
		msgs = append(msgs, d.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`c.json: /0/token: system "crm": unknown secret "missing"`,
		`c.json: /1/source/x/0: pipe "p": $SECRET(key) is only allowed in system configs`,
		`c.json: /3/source/webhook_secret: pipe "crm-event2": $SECRET(hook) is only allowed in system configs`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("diagnostics:\n%s\nwant %q", all, want)
		}
	}
	if strings.Contains(all, `"crm-event"`) || cfg.Pipes[1].Raw["source"].(map[string]any)["webhook_secret"] != "$SECRET(hook)" {
		t.Errorf("the http_endpoint webhook_secret was not left for the receiver:\n%s", all)
	}
	if strings.Contains(all, "VALUE") {
		t.Error("a diagnostic contains the value")
	}
	if err := cfg.Check(); err == nil {
		t.Error("Check passed with unresolved secrets")
	}
	var buf bytes.Buffer
	w := red.Writer(&buf)
	w.Write([]byte("token VALUE here\n"))
	if buf.String() != "token *** here\n" {
		t.Errorf("redacted %q", buf.String())
	}
}
