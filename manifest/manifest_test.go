package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrydata/ferry/templates"
)

// writeConnector writes files (path -> content) into a fresh directory.
func writeConnector(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
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

const okTemplate = `{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "rest", "system": "{{@ system @}}"}}`

func TestBadInput(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		file  string   // the error must name this file
		want  []string // and contain these
	}{
		{
			name:  "manifest is not JSON",
			files: map[string]string{"manifest.json": "{\n  \"auth\": \"api_key\",\n  \"datatypes\": {,}\n}"},
			file:  "manifest.json", want: []string{":3:17:", "not valid JSON"},
		},
		{
			name:  "datatype without template",
			files: map[string]string{"manifest.json": `{"datatypes": {"a": {"label": "A"}}}`},
			file:  "manifest.json", want: []string{"/datatypes/a/template", "required"},
		},
		{
			name:  "template path outside the connector",
			files: map[string]string{"manifest.json": `{"datatypes": {"a": {"template": "../outside.json"}}}`},
			file:  "manifest.json", want: []string{"/datatypes/a/template", "outside the connector directory"},
		},
		{
			name:  "absolute template path",
			files: map[string]string{"manifest.json": `{"datatypes": {"a": {"template": "/etc/passwd"}}}`},
			file:  "manifest.json", want: []string{"outside the connector directory"},
		},
		{
			name:  "missing template file",
			files: map[string]string{"manifest.json": `{"datatypes": {"a": {"template": "templates/a.json"}}}`},
			file:  "manifest.json", want: []string{"/datatypes/a/template", `"templates/a.json" not found`},
		},
		{
			name:  "missing system template",
			files: map[string]string{"manifest.json": `{"system-template": "templates/system.json", "datatypes": {}}`},
			file:  "manifest.json", want: []string{"/system-template", "not found"},
		},
		{
			name: "unclosed expansion tag",
			files: map[string]string{
				"manifest.json":    `{"datatypes": {"a": {"template": "templates/a.json"}}}`,
				"templates/a.json": "[\n  {\"_id\": \"{{@ system -collect\", \"type\": \"pipe\"}]",
			},
			file: "templates/a.json", want: []string{"templates/a.json:2:12:", `"@}}"`, `datatype "a"`},
		},
		{
			name: "template renders invalid JSON",
			files: map[string]string{
				"manifest.json":    `{"datatypes": {"a": {"template": "templates/a.json"}}}`,
				"templates/a.json": "[\n  {\"_id\": \"{{@ system @}}\",\n   \"type\": \"pipe\",}\n]",
			},
			file: "templates/a.json", want: []string{"templates/a.json:3:19:", `datatype "a"`, "not valid JSON", "output line 3 column 19"},
		},
		{
			name: "hyphenated variable",
			files: map[string]string{
				"manifest.json":    `{"additional_parameters": {"my-param": {}}, "datatypes": {"a": {"template": "templates/a.json"}}}`,
				"templates/a.json": `{"_id": "x", "type": "pipe", "v": "{{@ my-param @}}"}`,
			},
			file: "templates/a.json", want: []string{"'my' is undefined", `datatype "a"`, "$ENV(my-param)"},
		},
		{
			name:  "additional parameter name that is not an identifier",
			files: map[string]string{"manifest.json": `{"additional_parameters": {"base url": {}}, "datatypes": {}}`},
			file:  "manifest.json", want: []string{"/additional_parameters", `"base url"`},
		},
		{
			name:  "wrong type",
			files: map[string]string{"manifest.json": `{"datatypes": {"a": {"template": "t.json", "webhook": "yes"}}}`},
			file:  "manifest.json", want: []string{"/datatypes/a/webhook", "boolean"},
		},
		{
			name:  "unknown auth",
			files: map[string]string{"manifest.json": `{"auth": "basic", "datatypes": {}}`},
			file:  "manifest.json", want: []string{"/auth"},
		},
		{
			name: "component is not an object",
			files: map[string]string{
				"manifest.json":    `{"datatypes": {"a": {"template": "templates/a.json"}}}`,
				"templates/a.json": `[1]`,
			},
			file: "templates/a.json", want: []string{"not an object"},
		},
		{
			name: "boolean placeholder as key",
			files: map[string]string{
				"manifest.json":    `{"datatypes": {"a": {"template": "templates/a.json", "parameters": {"f": true}}}}`,
				"templates/a.json": `{"{{@ f @}}": 1}`,
			},
			file: "templates/a.json", want: []string{"object key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeConnector(t, tt.files)
			m, err := Load(dir)
			if err == nil {
				_, err = m.Expand(Options{})
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tt.file) {
				t.Errorf("error %q does not name %s", err, tt.file)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestInvalidJSONErrorFields(t *testing.T) {
	dir := writeConnector(t, map[string]string{
		"manifest.json":      `{"datatypes": {"first": {"template": "templates/ok.json"}, "second": {"template": "templates/bad.json"}}}`,
		"templates/ok.json":  okTemplate,
		"templates/bad.json": `[{"_id": "{{@ datatype @}}", "n": 01}]`,
	})
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Expand(Options{})
	var te *templates.Error
	if !errors.As(err, &te) {
		t.Fatalf("got %T %v, want *templates.Error", err, err)
	}
	if te.File != "templates/bad.json" || te.Datatype != "second" || te.Line != 1 || te.Col != 36 {
		t.Errorf("got file %q datatype %q at %d:%d", te.File, te.Datatype, te.Line, te.Col)
	}
}

func TestLoad(t *testing.T) {
	dir := writeConnector(t, map[string]string{
		"manifest.json": `{"auth": "oauth2", "additional_parameters": {"b": {}, "a": {}},
			"datatypes": {"z": {"template": "templates/x.json", "parent": "y", "parameters": {"k": "v", "n": 2.50, "f": false},
			"sync_frequency": "weekly", "schedule_interval": 60, "webhook": true, "extra": [1]},
			"y": {"template": "templates/x.json"}, "z": {"template": "templates/x.json", "label": "Zed"}},
			"unknown_key": {"allowed": true}}`,
		"templates/x.json": okTemplate,
	})
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Auth != "oauth2" || strings.Join(m.AdditionalParameters, ",") != "b,a" {
		t.Errorf("auth %q params %v", m.Auth, m.AdditionalParameters)
	}
	// Duplicate key: last value at the first position.
	if len(m.Datatypes) != 2 || m.Datatypes[0].Name != "z" || m.Datatypes[0].Label != "Zed" || m.Datatypes[0].HasParent || m.Datatypes[1].Name != "y" {
		t.Fatalf("datatypes %+v", m.Datatypes)
	}
	if _, ok := m.Raw.Get("unknown_key"); !ok {
		t.Error("unknown keys must be kept in Raw")
	}
	if got := m.Datatypes[0].TemplateName(); got != "x" {
		t.Errorf("TemplateName %q", got)
	}
}

func TestLoadDatatypeFields(t *testing.T) {
	dir := writeConnector(t, map[string]string{
		"manifest.json": `{"datatypes": {"z": {"template": "templates/x.json", "parent": "y", "parameters": {"k": "v", "n": 2.50, "f": false},
			"sync_frequency": "weekly", "schedule_interval": 60, "webhook": true, "bidirectional": true, "extra": [1]}}}`,
		"templates/x.json": okTemplate,
	})
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := m.Datatypes[0]
	if !d.HasParent || d.Parent != "y" || d.SyncFrequency != "weekly" || d.ScheduleInterval != "60" || !d.Webhook || !d.Bidirectional {
		t.Errorf("datatype %+v", d)
	}
	if len(d.Parameters) != 3 || d.Parameters[1].Value != json.Number("2.50") || d.Parameters[2].Value != false {
		t.Errorf("parameters %+v", d.Parameters)
	}
}

func TestExpandOptions(t *testing.T) {
	dir := writeConnector(t, map[string]string{
		"manifest.json": `{"additional_parameters": {"account_id": {}, "base_url": {}}, "system-template": "templates/system.json",
			"datatypes": {"a": {"template": "templates/a.json", "parameters": {"p": "A"}}, "b": {"template": "templates/a.json"}}}`,
		"templates/system.json": `{"_id": "{{@ system @}}", "type": "system:rest", "url": "{{@ base_url @}}/{{@ account_id @}}", "full": "{{@ is_fullsync @}}"}`,
		"templates/a.json":      `[{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "rest"}, "p": "{{@ p @}}", "z": 1, "a": 2}]`,
	})
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	comps, err := m.Expand(Options{System: "mysys", Vars: map[string]any{"account_id": "42", "is_fullsync": true}, Datatypes: []string{"b"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range comps {
		ids = append(ids, c.Kind+":"+c.ID+":"+c.Datatype)
	}
	if got := strings.Join(ids, " "); got != "system:mysys: pipe:mysys-b-collect:b pipe:mysys-b-transform:b" {
		t.Fatalf("components %s", got)
	}
	if got := string(comps[0].JSON); got != `{"_id":"mysys","type":"system:rest","url":"$ENV(base_url)/42","full":true}` {
		t.Errorf("system %s", got)
	}
	// Parameters of skipped datatypes still carry over; key order is the template's.
	if got := string(comps[1].JSON); !strings.HasPrefix(got, `{"_id":"mysys-b-collect","type":"pipe","source":{"type":"rest"},"p":"A","z":1,"a":2,"comment":"WARNING!`) {
		t.Errorf("pipe %s", got)
	}
	if _, err := m.Expand(Options{Datatypes: []string{"nope"}}); !errors.Is(err, ErrNoSuchDatatype) {
		t.Errorf("unknown datatype: %v", err)
	}
}

func TestDeploy(t *testing.T) {
	dir := writeConnector(t, map[string]string{
		"manifest.json": `{"use_webhook_secret": true, "datatypes": {
			"plain": {"template": "templates/plain.json"},
			"since": {"template": "templates/since.json"},
			"slow": {"template": "templates/plain.json", "sync_frequency": "slow"},
			"weekly": {"template": "templates/all.json", "sync_frequency": "weekly"},
			"hook": {"template": "templates/all.json", "webhook": true},
			"fixed": {"template": "templates/all.json", "webhook": true, "sync_frequency": "slow", "schedule_interval": 42},
			"other": {"template": "templates/other.json", "sync_frequency": "weekly"}}}`,
		"templates/plain.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "rest"}},
			{"_id": "{{@ system @}}-{{@ datatype @}}-share", "type": "pipe", "source": {"type": "dataset", "dataset": "x"}},
			{"_id": "{{@ system @}}-{{@ datatype @}}-event", "type": "pipe", "source": {"type": "http_endpoint"}}]`,
		"templates/since.json": `{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "rest"}, "metadata": {"supports_since": true}}`,
		"templates/all.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "merge_datasets"}},
			{"_id": "{{@ system @}}-{{@ datatype @}}-all", "type": "pipe", "source": {"type": "rest"}, "pump": {"cron_expression": "1 2 * * *"}}]`,
		"templates/other.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-salelist", "type": "pipe", "source": {"type": "embedded"}}]`,
	})
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	comps, err := m.Expand(Options{System: "s", Deploy: true})
	if err != nil {
		t.Fatal(err)
	}
	pumps := map[string]string{}
	perms := map[string]string{}
	for _, c := range comps {
		if p, ok := c.obj.Get("pump"); ok {
			b, _ := appendJSON(nil, p)
			pumps[c.ID] = string(b)
		}
		if p, ok := c.obj.Get("permissions"); ok {
			b, _ := appendJSON(nil, p)
			perms[c.ID] = string(b)
		}
	}
	want := map[string]string{
		"s-plain-collect":  `{"schedule_interval":300}`,
		"s-since-collect":  `{"schedule_interval":10}`,
		"s-slow-collect":   `{"cron_expression":"0 0 * * *"}`,
		"s-weekly-all":     `{"cron_expression":"0 0 * * 1"}`,
		"s-hook-all":       `{"schedule_interval":3600}`,
		"s-fixed-all":      `{"schedule_interval":42}`,
		"s-other-salelist": `{"cron_expression":"0 0 * * 1"}`,
	}
	for id, w := range want {
		if pumps[id] != w {
			t.Errorf("%s pump %s, want %s", id, pumps[id], w)
		}
	}
	if len(pumps) != len(want) {
		t.Errorf("pumps on %v, want only %v", pumps, want)
	}
	if perms["s-plain-event"] != `[["allow",["group:Anonymous"],["write_data"]]]` || len(perms) != 2 {
		t.Errorf("permissions %v", perms)
	}
	// Plain expansion injects nothing.
	plainComps, err := m.Expand(Options{System: "s"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plainComps {
		if strings.Contains(string(c.JSON), `"schedule_interval"`) || strings.Contains(string(c.JSON), `"permissions"`) {
			t.Errorf("plain expansion changed %s: %s", c.ID, c.JSON)
		}
	}
}

func TestWriteExpanded(t *testing.T) {
	dir := writeConnector(t, map[string]string{
		"manifest.json": `{"use_webhook_secret": true, "additional_parameters": {"token": {}}, "system-template": "templates/system.json",
			"datatypes": {"a": {"template": "templates/a.json"}}}`,
		"templates/system.json": `{"_id": "{{@ system @}}", "type": "system:rest", "name": "ø"}`,
		"templates/a.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-event", "type": "pipe", "source": {"type": "http_endpoint"}, "n": 1.50},
			{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "rest"}, "v": 1},
			{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "rest"}, "v": 2},
			{"_id": "meta", "type": "metadata"}]`,
	})
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	comps, err := m.Expand(Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), ".expanded")
	if err := os.MkdirAll(filepath.Join(out, "pipes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "pipes", "stale.conf.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteExpanded(out, m, comps); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	files := map[string]string{
		"node-metadata.conf.json":  "{\n  \"_id\": \"node\",\n  \"task_manager\": {\n    \"disable_user_pipes\": true\n  },\n  \"type\": \"metadata\"\n}",
		"test-env.json":            "{\n  \"node-env\": \"test\",\n  \"token\": \"\"\n}",
		"systems/xxxxxx.conf.json": "{\n  \"_id\": \"xxxxxx\",\n  \"name\": \"\\u00f8\",\n  \"type\": \"system:rest\"\n}",
		"pipes/xxxxxx-a-event.conf.json": "{\n  \"_id\": \"xxxxxx-a-event\",\n  \"n\": 1.50,\n  \"permissions\": [\n    [\n      \"allow\",\n      [\n        \"group:Anonymous\"\n      ],\n      [\n        \"write_data\"\n      ]\n    ]\n  ],\n" +
			"  \"source\": {\n    \"type\": \"http_endpoint\"\n  },\n  \"type\": \"pipe\"\n}",
	}
	for name, want := range files {
		if got := read(name); got != want {
			t.Errorf("%s:\n%s\nwant\n%s", name, got, want)
		}
	}
	if got := read("pipes/xxxxxx-a-collect.conf.json"); !strings.Contains(got, `"v": 2`) {
		t.Errorf("duplicate ids: last must win, got %s", got)
	}
	entries, _ := os.ReadDir(filepath.Join(out, "pipes"))
	if len(entries) != 3 {
		t.Errorf("pipes/ has %d files, want 3 (event, collect, transform shim; stale file removed)", len(entries))
	}
	// An _id that is not a file name is refused.
	bad := []Component{{ID: "../x", JSON: json.RawMessage(`{"_id": "../x", "type": "pipe"}`)}}
	if err := WriteExpanded(out, m, bad); err == nil {
		t.Error("WriteExpanded accepted _id ../x")
	}
}

// Datatype parameters may be of any JSON type; lists and objects reach the
// templates unchanged (sesam-py passes them to Jinja as they are).
func TestParametersOfAnyType(t *testing.T) {
	dir := writeConnector(t, map[string]string{
		"manifest.json": `{"datatypes": {"a": {"template": "templates/a.json",
			"parameters": {"fields": ["id", "name"], "cfg": {"mode": "full", "limits": {"page": 50}}, "none": null, "n": 1.5}}}}`,
		"templates/a.json": `[{"_id": "{{@ system @}}-{{@ datatype @}}-collect", "type": "pipe", "source": {"type": "rest"},
			"fields": {{@ fields | tojson @}}, "select": "{{@ fields | join(',') @}}",
			"each": [{{% for f in fields %}}"{{@ f @}}"{{% if not loop.last %}}, {{% endif %}}{{% endfor %}}],
			"mode": "{{@ cfg.mode @}}", "page": {{@ cfg.limits.page @}}, "cfg": {{@ cfg | tojson @}},
			"repr": "{{@ fields @}}", "none": "{{@ none @}}", "n": {{@ n @}}}]`,
	})
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	comps, err := m.Expand(Options{System: "s"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"_id":"s-a-collect","type":"pipe","source":{"type":"rest"},"fields":["id","name"],"select":"id,name",` +
		`"each":["id","name"],"mode":"full","page":50,"cfg":{"limits":{"page":50},"mode":"full"},` +
		`"repr":"['id', 'name']","none":"None","n":1.5}`
	if got := string(comps[0].JSON); got != want {
		t.Errorf("expansion\n got %s\nwant %s", got, want)
	}
}
