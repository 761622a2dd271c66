package templates

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// referenceCase is one template rendered by Jinja2 3.1.6 with sesam-py's
// expansion environment (testdata/jinja2_reference.py generates the file).
type referenceCase struct {
	Src  string         `json:"src"`
	Vars map[string]any `json:"vars"`
	Out  *string        `json:"out"`
	Err  string         `json:"err"`
}

// knownDivergences are cases where Ferry deliberately differs from Jinja2,
// with the reason.
var knownDivergences = map[string]string{
	"{{@ d @}}":                         "dicts print in sorted key order: Go maps keep no insertion order",
	"{{% macro m() %}}{{% endmacro %}}": "macros are not supported at expansion time (clear error instead)",
}

func TestJinja2Reference(t *testing.T) {
	data, err := os.ReadFile("testdata/jinja2_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []referenceCase
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Src, func(t *testing.T) {
			if why, ok := knownDivergences[c.Src]; ok {
				t.Skip(why)
			}
			tpl, err := Compile("t.json", c.Src)
			var got string
			if err == nil {
				got, err = tpl.Render(c.Vars)
			}
			if c.Out == nil {
				if err == nil {
					t.Fatalf("rendered %q; Jinja2 fails with %s", got, c.Err)
				}
				var te *Error
				if !errors.As(err, &te) || te.File != "t.json" || te.Line < 1 || te.Col < 1 {
					t.Fatalf("error %v is not an *Error with file and position", err)
				}
				t.Logf("jinja2: %s\nferry:  %v", c.Err, err)
				return
			}
			if err != nil {
				t.Fatalf("error %v; Jinja2 renders %q", err, *c.Out)
			}
			if got != *c.Out {
				t.Errorf("got  %q\nwant %q", got, *c.Out)
			}
		})
	}
}
