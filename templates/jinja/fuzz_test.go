package jinja

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzCompileRender feeds arbitrary template text to Compile and Render.
// Neither may panic (engine panics must come back as errors), and a render
// must finish: the guard fails the input if one render takes longer than
// renderTimeout, which would mean the size/loop bounds of the package leak.
func FuzzCompileRender(f *testing.F) {
	if b, err := os.ReadFile("testdata/corpus_expressions.json"); err == nil {
		var seeds []string
		if json.Unmarshal(b, &seeds) == nil {
			for _, s := range seeds {
				f.Add(s)
			}
		}
	}
	for _, s := range []string{
		"", "{{", "{%", "{#", "}}", "{{ x }", "{% if %}", "{{ [1,2][5] }}", "{{ 'a' * 9999999999 }}",
		"{{ x|replace('', 'yyyyyyyy')|replace('', 'yyyyyyyy') }}", "{{ (1).x() }}", "{{ {'a': 1}.get('a') }}",
		"{{ 1/0 }}", "{{ -'x' }}", "{{ x[1:2:0] }}", "{% raw %}{{{% endraw %}", "{{ now().strftime('%') }}",
		"{{ a is defined and a.b.c is not none }}", "{{ 1e400 | tojson }}", "{{ 'x' ~ 1.5 ~ none ~ true }}",
	} {
		f.Add(s)
	}
	const renderTimeout = 10 * time.Second
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 1024 {
			t.Skip("template longer than 1 KiB")
		}
		tpl, err := Compile(src)
		if err != nil {
			if !strings.Contains(err.Error(), "jinja: compile") {
				t.Fatalf("compile error of the wrong form: %v", err)
			}
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx := Context{
				"x":    "abc",
				"a":    map[string]any{"b": json.Number("1.10"), "l": []any{json.Number("1"), "s", nil}},
				"n":    json.Number("12345678901234567890"),
				"none": nil,
			}
			_, _ = tpl.Render(ctx)
			_, _, _ = RenderValue(ctx, tpl)
		}()
		select {
		case <-done:
		case <-time.After(renderTimeout):
			t.Fatalf("render of %q did not finish within %v", src, renderTimeout)
		}
	})
}
