package connectors_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/connectors"
)

func writeConnector(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shop-connector")
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var shop = map[string]string{
	"manifest.json": `{"additional_parameters": {"account_id": {}, "region": {}, "shop_webhook_dataset": {}}, "system-template": "templates/system.json",
		"datatypes": {"person": {"template": "templates/dt.json"}, "order": {"template": "templates/dt.json"}}}`,
	"templates/system.json": `{"_id": "{{@ system @}}", "type": "system:url", "base_url": "https://x/{{@ account_id @}}/",
		"hook": "{{@ shop_webhook_dataset @}}", "since": "{{@ connected_ts @}}", "full": "{{@ is_fullsync @}}"}`,
	"templates/dt.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "json", "url": "$ENV(region)"}},
		{"_id": "{{@ system @}}-{{@ datatype @}}-share", "type": "pipe", "source": {"type": "dataset", "dataset": "{{@ system @}}-{{@ datatype @}}-collect"}}]`,
}

func TestInstanceExpansion(t *testing.T) {
	dir := writeConnector(t, shop)
	in := &connectors.Instance{ID: "acme", Connector: connectors.Name(dir), Dir: dir,
		Params:    map[string]string{"account_id": "42", "region": "eu", "shop_webhook_dataset": "hooks", "is_fullsync": "true"},
		Share:     []string{"order"},
		Connected: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
	if in.Connector != "shop" {
		t.Fatalf("Name = %q", in.Connector)
	}
	base := func(n string) (string, bool) {
		return map[string]string{"region": "from-file", "other": "o"}[n], n == "region" || n == "other"
	}
	exp, err := in.Expansion(base)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range exp.Components {
		ids = append(ids, c.(map[string]any)["_id"].(string))
	}
	want := []string{"acme", "acme-person-collect", "acme-person-transform", "acme-order-collect", "acme-order-share", "acme-order-transform"}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("ids %v, want %v (person's share pipe left out)", ids, want)
	}
	sys := exp.Components[0].(map[string]any)
	if sys["base_url"] != "https://x/42/" || sys["hook"] != "hooks" || sys["since"] != "2024-05-06T07:08:09Z" || sys["full"] != true {
		t.Errorf("injected variables: %v", sys)
	}
	// $ENV: parameters first, then the base lookup.
	if v, _ := exp.Env("region"); v != "eu" {
		t.Errorf("region = %q, want the parameter", v)
	}
	if v, _ := exp.Env("other"); v != "o" {
		t.Errorf("other = %q, want the base value", v)
	}
	cfg := &engine.Config{}
	exp.AddTo(cfg)
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	if src := cfg.Pipe("acme-person-collect").Raw["source"].(map[string]any); src["url"] != "eu" {
		t.Errorf("resolved url %v", src["url"])
	}
	if cfg.Pipe("acme-person-collect").File != "connector:acme[acme-person-collect]" {
		t.Errorf("file %q", cfg.Pipe("acme-person-collect").File)
	}

	// Unknown share datatype, share outside the enabled datatypes.
	bad := *in
	bad.Share = []string{"nope"}
	if _, err := bad.Expansion(nil); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("unknown share datatype: %v", err)
	}
	bad.Datatypes, bad.Share = []string{"person"}, []string{"order"}
	if err := bad.Check(); err == nil {
		t.Error("share outside the enabled datatypes accepted")
	}
}

func TestRecordListRemove(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range []string{"b", "a"} {
		if err := connectors.Put(ctx, st, &connectors.Instance{ID: id, Connector: "x", Dir: "/x", Params: map[string]string{"p": id}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := connectors.Put(ctx, st, &connectors.Instance{ID: "c", Dir: "relative"}); err == nil {
		t.Error("relative dir accepted")
	}
	list, err := connectors.List(ctx, st)
	if err != nil || len(list) != 2 || list[0].ID != "a" || list[1].Params["p"] != "b" {
		t.Fatalf("List = %v %v", list, err)
	}
	if ok, err := connectors.Remove(ctx, st, "a"); !ok || err != nil {
		t.Errorf("Remove = %v %v", ok, err)
	}
	if ok, err := connectors.Remove(ctx, st, "a"); ok || err != nil {
		t.Errorf("second Remove = %v %v", ok, err)
	}
	// LoadInstances names the instance whose connector is gone.
	if _, err := connectors.LoadInstances(ctx, st, nil); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("LoadInstances with a missing connector: %v", err)
	}
}

func TestPurgePrefix(t *testing.T) {
	prefix, match := connectors.PurgePrefix("acme", []string{"acme", "acme-eu"})
	if prefix != "acme-" {
		t.Errorf("prefix %q", prefix)
	}
	for name, want := range map[string]bool{"acme-person": true, "acme-eu-person": false, "acmeperson": false, "acme": false, "other-acme-x": false} {
		if match(name) != want {
			t.Errorf("match(%q) = %v", name, !want)
		}
	}
}

// TestDirections: per datatype pull (no share pipe), push (share pipe,
// input pipes manual) or both; the manifest's bidirectional flag makes
// both the default; a config pipe replaces a shim of the same _id.
func TestDirections(t *testing.T) {
	files := map[string]string{}
	for k, v := range shop {
		files[k] = v
	}
	files["manifest.json"] = `{"additional_parameters": {"account_id": {}, "region": {}, "shop_webhook_dataset": {}}, "system-template": "templates/system.json",
		"datatypes": {"person": {"template": "templates/dt.json", "bidirectional": true}, "order": {"template": "templates/dt.json"}, "item": {"template": "templates/dt.json"}}}`
	dir := writeConnector(t, files)
	in := &connectors.Instance{ID: "acme", Connector: "shop", Dir: dir, Params: map[string]string{"region": "eu", "account_id": "1", "shop_webhook_dataset": "h"},
		Directions: map[string]string{"order": "push"}}
	if err := in.Check(); err != nil {
		t.Fatal(err)
	}
	exp, err := in.Expansion(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, c := range exp.Components {
		m := c.(map[string]any)
		got[m["_id"].(string)] = m
	}
	if got["acme-person-share"] == nil || got["acme-order-share"] == nil || got["acme-item-share"] != nil {
		t.Errorf("share pipes: person %v (bidirectional: both), order %v (push), item %v (pull: none)",
			got["acme-person-share"] != nil, got["acme-order-share"] != nil, got["acme-item-share"] != nil)
	}
	if pump, _ := got["acme-order-collect"]["pump"].(map[string]any); pump["mode"] != "manual" {
		t.Errorf("push datatype's collect pump = %v, want manual", got["acme-order-collect"]["pump"])
	}
	if got["acme-person-collect"]["pump"] != nil && got["acme-person-collect"]["pump"].(map[string]any)["mode"] == "manual" {
		t.Error("a both datatype's collect is manual")
	}
	for dt, want := range map[string]string{"person": "both", "order": "push", "item": "pull"} {
		m, _, _ := in.Expand()
		if d := in.Direction(m, dt); d != want {
			t.Errorf("Direction(%s) = %s, want %s", dt, d, want)
		}
	}
	// A config pipe with a shim's _id replaces the shim.
	cfg := &engine.Config{}
	cfg.AddComponents("mine.json", []any{map[string]any{"_id": "acme-order-transform", "type": "pipe",
		"source": map[string]any{"type": "dataset", "dataset": "global-order"}}}, nil)
	exp.AddTo(cfg)
	if err := cfg.Check(); err != nil {
		t.Fatalf("the config's transform pipe did not replace the shim: %v", err)
	}
	if p := cfg.Pipe("acme-order-transform"); p == nil || p.File != "mine.json" {
		t.Errorf("acme-order-transform comes from %v", p)
	}
	bad := *in
	bad.Directions = map[string]string{"order": "sideways"}
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), `"sideways" is not pull, push or both`) {
		t.Errorf("bad direction: %v", err)
	}
}

// history is a connector whose collect starts from the instance's
// historical-data setting.
var history = map[string]string{
	"manifest.json": `{"datatypes": {"person": {"template": "templates/dt.json"}}}`,
	"templates/dt.json": `[{"_id": "<<@ system @>>-<<@ datatype @>>-collect", "type": "pipe",
		"source": {"type": "json", "url": "x", "initial_since_value": "<<@ history_since @>>",
		  "unix": "<<@ history_since_unix @>>", "full": "<<@ is_fullsync @>>", "mode": "<<@ history @>>"}}]`,
}

func TestInstanceHistory(t *testing.T) {
	dir := writeConnector(t, history)
	connected := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	src := func(in *connectors.Instance) map[string]any {
		t.Helper()
		exp, err := in.Expansion(nil)
		if err != nil {
			t.Fatal(err)
		}
		return exp.Components[0].(map[string]any)["source"].(map[string]any)
	}
	for _, tc := range []struct {
		history string
		params  map[string]string
		since   string
		unix    string
		full    bool
		mode    string
	}{
		{"", nil, "", "", true, "all"},
		{"all", nil, "", "", true, "all"},
		{"since-connected", nil, "2024-05-06T07:08:09Z", "1714979289", false, "since-connected"},
		{"2024-01-31", nil, "2024-01-31T00:00:00Z", "1706659200", false, "2024-01-31"},
		{"2024-01-31T12:00:00+01:00", nil, "2024-01-31T11:00:00Z", "1706698800", false, "2024-01-31T12:00:00+01:00"},
		// The legacy parameter: is_fullsync=false means since-connected.
		{"", map[string]string{"is_fullsync": "false"}, "2024-05-06T07:08:09Z", "1714979289", false, "since-connected"},
		{"all", map[string]string{"is_fullsync": "false"}, "", "", true, "all"},
	} {
		in := &connectors.Instance{ID: "acme", Connector: "shop", Dir: dir, Connected: connected, History: tc.history, Params: tc.params}
		if err := in.Check(); err != nil {
			t.Fatalf("%q: %v", tc.history, err)
		}
		s := src(in)
		if s["initial_since_value"] != tc.since || s["unix"] != tc.unix || s["full"] != tc.full || s["mode"] != tc.mode {
			t.Errorf("history %q %v: source %v", tc.history, tc.params, s)
		}
		honours, err := in.HonoursHistory()
		if err != nil {
			t.Fatal(err)
		}
		if want := tc.since != ""; honours != want {
			t.Errorf("history %q: HonoursHistory = %v, want %v", tc.history, honours, want)
		}
	}
	bad := &connectors.Instance{ID: "acme", Dir: dir, History: "yesterday"}
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "since-connected") {
		t.Errorf("Check of history yesterday = %v", err)
	}
	// A connector that uses no history variable does not honour it.
	plain := &connectors.Instance{ID: "acme", Connector: "shop", History: "since-connected", Connected: connected, Dir: writeConnector(t, map[string]string{
		"manifest.json":     `{"datatypes": {"person": {"template": "templates/dt.json"}}}`,
		"templates/dt.json": `[{"_id": "<<@ system @>>-<<@ datatype @>>-collect", "type": "pipe", "source": {"type": "json", "url": "x"}}]`,
	})}
	if honours, err := plain.HonoursHistory(); err != nil || honours {
		t.Errorf("HonoursHistory of a connector without history variables = %v, %v", honours, err)
	}
}
