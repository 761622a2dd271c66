package engine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/all"
)

// compileErr compiles text with the standard registry and returns the
// diagnostics rendered one per line, and whether Compile failed.
func compileErr(t *testing.T, text string) (string, *engine.Plan, bool) {
	t.Helper()
	plan, err := engine.Compile(loadConfig(t, text), all.Registry(), nil)
	var ce *engine.ConfigError
	if err != nil && !errors.As(err, &ce) {
		t.Fatalf("Compile error %v is not a *ConfigError", err)
	}
	var lines []string
	for _, d := range plan.Diagnostics {
		lines = append(lines, d.String())
	}
	return strings.Join(lines, "\n"), plan, err != nil
}

func TestCompileDiagnostics(t *testing.T) {
	cases := []struct {
		name    string
		text    string
		failed  bool
		want    []string
		notWant []string
	}{
		{"jq does not compile", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"jq","expression":"nosuchfn(1)"}}`,
			true, []string{"error: ", "pipes.json: /transform/expression: jq expression does not compile"}, nil},
		{"jq does not parse in a list", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":[{"type":"jq","expression":"."},{"type":"jq","expression":"{"}]}`,
			true, []string{"/transform/1/expression: jq expression does not parse"}, nil},
		{"jq in a chained transform", `[{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"chained","transforms":[{"type":"jq","expression":".a |"}]}}]`,
			true, []string{"/0/transform/transforms/0/expression: jq expression does not parse"}, nil},
		{"unknown source", `{"_id":"p","type":"pipe","source":{"type":"magic"}}`,
			true, []string{`/source/type: unknown source type "magic" (known: dataset, embedded, `}, nil},
		{"unknown sink", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"sink":{"type":"teleport"}}`,
			true, []string{`/sink/type: unknown sink type "teleport" (known: dataset, null, rest)`}, nil},
		{"unknown transform", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"xslt"}}`,
			true, []string{`/transform/type: unknown transform type "xslt" (known: `, ` jq`}, nil},
		{"unknown system", `{"_id":"s","type":"system:carrier-pigeon"}`,
			true, []string{`/type: unknown system type "system:carrier-pigeon" (known: `, `system:url`}, nil},
		{"unsupported", `[{"_id":"p","type":"pipe","source":{"type":"csv"}},{"_id":"q","type":"pipe","source":{"type":"sql"},"transform":{"type":"http"}}]`,
			true, []string{"not supported yet: source:csv (1: p)", "not supported yet: transform:http (1: q)"}, nil},
		{"read but not written", `{"_id":"p","type":"pipe","source":{"type":"dataset","dataset":"orphan"}}`,
			false, []string{`warning: `, `/source: dataset "orphan" is read but no pipe in this config writes it`}, nil},
		{"two writers", `[{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"sink":{"dataset":"x"}},{"_id":"x","type":"pipe","source":{"type":"embedded","entities":[]}}]`,
			true, []string{`/1/sink: pipes "p" and "x" both write dataset "x"; a dataset has one writer`}, nil},
		{"unknown key", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[],"colour":1},"set-initial-offset":1}`,
			false, []string{`warning: `, `/source/colour: unknown key "colour" is ignored`, `/set-initial-offset: unknown key`}, nil},
		{"schema errors", `{"_id":"p","type":"pipe","batch_size":0,"source":{"type":"embedded","entities":[{"x":1}]}}`,
			true, []string{"/batch_size: ", "/source/entities/0: "}, nil},
		{"missing source", `{"_id":"p","type":"pipe"}`, true, []string{"source is required"}, []string{"must be a JSON object"}},
		{"bad cron", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"pump":{"cron_expression":"every day"}}`,
			true, []string{`/pump/cron_expression: invalid cron expression "every day"`}, nil},
		{"subset compiles", `{"_id":"p","type":"pipe","source":{"type":"dataset","dataset":"p2","subset":["eq","_S.a",1]}}`,
			false, nil, []string{"error", "/source/subset"}},
		{"subset does not compile", `{"_id":"p","type":"pipe","source":{"type":"dataset","dataset":"p2","subset":["eq",["lower","_S.a",2],1]}}`,
			true, []string{"/source/subset/1: DTL: "}, nil},
		{"hopped but not written", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"dtl","rules":{"default":[["add","x",["lookup-entity","nowhere","_S._id"]],["add","y",["lookup-entity","p","_S._id"]]]}}}`,
			false, []string{`warning: `, `/transform: dataset "nowhere" is hopped into but no pipe in this config writes it`}, []string{`"p" is hopped`}},
		{"own share dataset hopped", `{"_id":"sys-dt-collect","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"dtl","rules":{"default":[["add","x",["lookup-entity","sys-dt-share","_S._id"]],["add","y",["lookup-entity","sys-other-share","_S._id"]]]}}}`,
			false, []string{`"sys-other-share" is hopped into`}, []string{`"sys-dt-share"`}},
		{"share dataset not written", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"template","template":"transform-collect-rest","properties":{"primary_key":"id","share_dataset":"p-share"}}}`,
			false, nil, []string{"warning", "p-share"}},
		{"json source unknown system", `{"_id":"p","type":"pipe","source":{"type":"json","system":"nope","url":"x"}}`,
			true, []string{`/source/system: unknown system "nope"`}, nil},
		{"bad sink dataset name", `{"_id":"p","type":"pipe","source":{"type":"embedded","entities":[]},"sink":{"dataset":"system:x"}}`,
			true, []string{"/sink/dataset: "}, nil},
		{"valid", `[{"_id":"s","type":"system:url","base_url":"http://127.0.0.1/"},{"_id":"p","type":"pipe","source":{"type":"json","system":"s","url":"x"}}]`,
			false, nil, []string{"error", "warning"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg, _, failed := compileErr(t, c.text)
			if failed != c.failed {
				t.Errorf("failed = %v, want %v; diagnostics:\n%s", failed, c.failed, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("diagnostics:\n%s\nwant %q", msg, w)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("diagnostics:\n%s\nshould not contain %q", msg, w)
				}
			}
		})
	}
}

func TestCompileCollectsEveryError(t *testing.T) {
	msg, _, failed := compileErr(t, `[
 {"_id":"a","type":"pipe","source":{"type":"magic"}},
 {"_id":"b","type":"pipe","source":{"type":"embedded","entities":[]},"transform":{"type":"jq","expression":"}"}},
 {"_id":"c","type":"pipe","source":{"type":"embedded","entities":[]},"sink":{"type":"teleport"}}]`)
	if !failed {
		t.Fatal("compile succeeded")
	}
	for _, w := range []string{"/0/source/type", "/1/transform/expression", "/2/sink/type"} {
		if !strings.Contains(msg, w) {
			t.Errorf("diagnostics:\n%s\nmissing %s", msg, w)
		}
	}
}

func TestCompilePipeSettings(t *testing.T) {
	plan := compile(t, all.Registry(), `[
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[]}},
 {"_id":"b","type":"pipe","batch_size":7,"checkpoint_interval":3,"source":{"type":"dataset","dataset":"a"},"sink":{"dataset":"bee"},"pump":{"schedule_interval":60}},
 {"_id":"c","type":"pipe","source":{"type":"dataset","dataset":"bee"},"pump":{"cron_expression":"0 * * * *","mode":"manual"}},
 {"_id":"d","type":"pipe","source":{"type":"dataset","dataset":"bee","supports_signalling":true},"pump":{"schedule_interval":7200,"run_at_startup":true}},
 {"_id":"e","type":"pipe","source":{"type":"embedded","entities":[]},"sink":{"type":"null"}}]`)
	a, b, c, d, e := plan.Pipe("a"), plan.Pipe("b"), plan.Pipe("c"), plan.Pipe("d"), plan.Pipe("e")
	if a.BatchSize != engine.DefaultBatchSize || a.CheckpointInterval != engine.DefaultCheckpointInterval || a.Output != "a" || len(a.Inputs) != 0 || !a.Pump.Signalled {
		t.Errorf("a = %+v", a)
	}
	if b.BatchSize != 7 || b.CheckpointInterval != 3 || b.Output != "bee" || b.Inputs[0] != "a" || b.Pump.Interval != time.Minute || b.Pump.Signalled {
		t.Errorf("b = %+v pump %+v", b, b.Pump)
	}
	if c.Pump.Cron != "0 * * * *" || c.Pump.Mode != "manual" || c.Pump.Signalled {
		t.Errorf("c pump = %+v", c.Pump)
	}
	if !d.Pump.Signalled || !d.Pump.RunAtStartup || d.Pump.Interval != 2*time.Hour {
		t.Errorf("d pump = %+v", d.Pump)
	}
	if e.Output != "" {
		t.Errorf("null sink output = %q", e.Output)
	}
	var readers []string
	for _, p := range plan.Readers("bee") {
		readers = append(readers, p.ID)
	}
	if strings.Join(readers, ",") != "c,d" {
		t.Errorf("Readers(bee) = %v", readers)
	}
	if plan.Pipe("zz") != nil {
		t.Error("Pipe(unknown) != nil")
	}
}

func TestPlanOrder(t *testing.T) {
	_, plan, _ := compileErr(t, `[
 {"_id":"c","type":"pipe","source":{"type":"dataset","dataset":"b"}},
 {"_id":"b","type":"pipe","source":{"type":"dataset","dataset":"a"}},
 {"_id":"a","type":"pipe","source":{"type":"embedded","entities":[]}},
 {"_id":"x","type":"pipe","source":{"type":"dataset","dataset":"y"}},
 {"_id":"y","type":"pipe","source":{"type":"dataset","dataset":"x"}},
 {"_id":"self","type":"pipe","source":{"type":"dataset","dataset":"self"}}]`)
	order, cycles := plan.Order()
	var ids []string
	for _, p := range order {
		ids = append(ids, p.ID)
	}
	if strings.Join(ids, ",") != "a,b,c,y,x,self" {
		t.Errorf("order = %v", ids)
	}
	if len(cycles) != 1 || strings.Join(cycles[0], ",") != "x,y" {
		t.Errorf("cycles = %v, want [[x y]]", cycles)
	}
	// Compile refuses the cycle, naming it.
	errs := plan.Diagnostics.Errors()
	if len(errs) != 1 || errs[0].Pipe != "x" || errs[0].Pointer != "/3/source" ||
		!strings.Contains(errs[0].Message, `dataset cycle: "x" reads "y" (written by "y"), "y" reads "x" (written by "x")`) {
		t.Errorf("diagnostics = %v", plan.Diagnostics)
	}
}
