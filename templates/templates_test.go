package templates

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrydata/ferry/internal/corpus"
)

// TestLiteralText checks that everything but expansion tags reaches the
// output untouched, including text that would trip pongo2's own lexer.
func TestLiteralText(t *testing.T) {
	vars := map[string]any{"system": "sys", "p": "updatedDate"}
	tests := []struct{ name, src, want string }{
		{"json braces", `{"a": {"b": [1, {}]}}`, `{"a": {"b": [1, {}]}}`},
		{"runtime jinja", `{"u": "{{ entity.id }}", "x": "{% if a %}{{ a }}{% endif %}"}`, `{"u": "{{ entity.id }}", "x": "{% if a %}{{ a }}{% endif %}"}`},
		{"nested runtime and expansion", `"{{ {{@ p @}} }}"`, `"{{ updatedDate }}"`},
		{"brace before tag", `{{{@ system @}}}`, `{sys}`},
		{"closing braces", `}} }}} %}} @}} #}`, `}} }}} %}} @}} #}`},
		{"pongo2 verbatim text", `{% verbatim %}{{@ system @}}{% endverbatim %}`, `{% verbatim %}sys{% endverbatim %}`},
		{"stray endverbatim", `a{% endverbatim %}b`, `a{% endverbatim %}b`},
		{"pongo2 comment-like text", `{#}`[:0] + `x {% comment %} y`, `x {% comment %} y`},
		{"generated function names in text", `{{ __ferry_o(0) }} __ferry_v(1)`, `{{ __ferry_o(0) }} __ferry_v(1)`},
		{"newlines in text and tags", "a\n{{@\nsystem\n@}}\nb", "a\nsys\nb"},
		{"crlf normalised", "a\r\nb\r\n", "a\nb"},
		{"one trailing newline dropped", "x\n\n", "x\n"},
		{"unicode", `"ø→{{@ system @}}→✓"`, `"ø→sys→✓"`},
		{"angle dialect", `<<@ system @>>-<<% if true %>>y<<% endif %>>`, `sys-y`},
		{"dialects mixed", `{{@ system @}}<<@ system @>>`, `syssys`},
		{"angle text", `a << b >> c <<@ system @>>`, `a << b >> c sys`},
		{"comment", `a{# {{@ system @}} #}b`, `ab`},
		{"comment opened by literal {#", `"x": "{# not json #}", "y": 1`, `"x": "", "y": 1`},
		{"two raw blocks back to back", `{{% raw %}}{{@ a @}}{{% endraw %}}{{% raw %}}{{% b %}}{{% endraw %}}`, `{{@ a @}}{{% b %}}`},
		{"end delimiter inside string", `{{@ "@}}" @}}`, `@}}`},
		{"whitespace control", "a  {{@- system -@}}  b", "asysb"},
		{"empty template", ``, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := Compile("t.json", tt.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tpl.Render(vars)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestErrors checks that errors are *Error values with the right position.
func TestErrors(t *testing.T) {
	tests := []struct {
		name, src      string
		vars           map[string]any
		line, col      int
		wantSubstrings []string
	}{
		{"unclosed variable", "[\n  \"{{@ system\"]", nil, 2, 4, []string{`unterminated string`, `"@}}"`}},
		{"unclosed variable at end", "[\n  {{@ system", nil, 2, 3, []string{`not closed`, `"@}}"`}},
		{"unclosed block", "{{% if x %}}\n{{% for y in z %}}", nil, 2, 1, []string{"'for' block", "never closed"}},
		{"unclosed angle", `<<@ x`, nil, 1, 1, []string{`"@>>"`}},
		{"mismatched delimiters", `{{@ x @>>`, nil, 1, 1, []string{`"@}}"`}},
		{"hyphenated variable", `{"x": "{{@ my-param @}}"}`, map[string]any{"my-param": "$ENV(my-param)"}, 1, 14, []string{"'my' is undefined"}},
		{"undefined attribute", "\n  {{@ a.b.c @}}", nil, 2, 9, []string{"'a' is undefined"}},
		{"type error", `{{@ 1 + "a" @}}`, nil, 1, 7, []string{"unsupported operand"}},
		{"unknown filter", `{{@ x | frobnicate @}}`, nil, 1, 9, []string{"no filter named 'frobnicate'"}},
		{"unknown statement", `{{% include "x.json" %}}`, nil, 1, 5, []string{"'include' is not supported"}},
		{"stray endfor", `{{% endfor %}}`, nil, 1, 1, []string{"unexpected 'endfor'"}},
		{"else after else", `{{% if a %}}{{% else %}}{{% else %}}{{% endif %}}`, nil, 1, 25, []string{"unexpected 'else'"}},
		{"unclosed comment", "ab\n{# x", nil, 2, 1, []string{"comment"}},
		{"unclosed raw", `{{% raw %}}x`, nil, 1, 1, []string{"endraw"}},
		{"bad unpack", `{{% set a, b = [1] %}}`, nil, 1, 1, []string{"cannot unpack"}},
		{"huge repeat", `{{@ "ab" * 100000000000 @}}`, nil, 1, 10, []string{"too large"}},
		{"runaway loops", `{{% for a in range(100000) %}}{{% for b in range(100000) %}}{{% endfor %}}{{% endfor %}}`, nil, 1, 31, []string{"too expensive"}},
		{"huge power", `{{@ 2 ** 100000000000 @}}`, nil, 1, 7, []string{"overflow"}},
		// Statement keywords in an output tag: Jinja2 reads them as undefined
		// variables and expands them to nothing; Ferry refuses them.
		{"for as a value", "[\n {{@ for @}}]", nil, 2, 6, []string{"'for' is a statement", "{{% for x in list %}}"}},
		{"for loop in an output tag", `{{@ for x in list @}}`, nil, 1, 5, []string{"'for' is a statement"}},
		{"endif as a value", `{{@ endif @}}`, nil, 1, 5, []string{"'endif' is a statement", "{{% endif %}}"}},
		{"macro as a value", `{{@ macro @}}`, nil, 1, 5, []string{"'macro' is a Jinja statement"}},
		{"in as a value", `<<@ in @>>`, nil, 1, 5, []string{"'in' is an operator"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tpl, err := Compile("templates/x.json", tt.src)
			if err == nil {
				tpl.maxSteps = 10_000
				_, err = tpl.Render(tt.vars)
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("%v is %T, not *Error", err, err)
			}
			if te.File != "templates/x.json" || te.Line != tt.line || te.Col != tt.col {
				t.Errorf("error %q at %s:%d:%d, want templates/x.json:%d:%d", err, te.File, te.Line, te.Col, tt.line, tt.col)
			}
			if !strings.HasPrefix(err.Error(), "templates/x.json:") {
				t.Errorf("error %q does not start with the file name", err)
			}
			for _, s := range tt.wantSubstrings {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestUndefinedErrorName(t *testing.T) {
	tpl, err := Compile("x", `{{@ my-param @}}`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpl.Render(nil)
	var ue *UndefinedError
	if !errors.As(err, &ue) || ue.Name != "my" {
		t.Fatalf("got %v, want an UndefinedError for 'my'", err)
	}
}

func TestValues(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{int64(5), "5"},
		{5, "5"},
		{"12345678901234567890123", "12345678901234567890123"},
		{true, "True"},
		{nil, "None"},
		{1.0, "1.0"},
		{1e22, "1e+22"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{-2.5, "-2.5"},
		{[]any{"a", int64(1)}, "['a', 1]"},
		{[]string{"x"}, "['x']"},
		{map[string]any{"k": "v"}, "{'k': 'v'}"},
	}
	tpl, err := Compile("x", "{{@ v @}}")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		got, err := tpl.Render(map[string]any{"v": tt.v})
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%#v renders %q, want %q", tt.v, got, tt.want)
		}
	}
	// json.Number keeps Python's int/float distinction and exactness.
	for num, want := range map[string]string{"5": "5", "5.0": "5.0", "1E3": "1000.0", "123456789012345678901234567890": "123456789012345678901234567890", "0.1": "0.1"} {
		got, err := tpl.Render(map[string]any{"v": jsonNumber(num)})
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("json.Number %s renders %q, want %q", num, got, want)
		}
	}
}

func TestSourcePos(t *testing.T) {
	tpl, err := Compile("x", "ab\n{{@ v @}}cd")
	if err != nil {
		t.Fatal(err)
	}
	out, err := tpl.RenderOutput(map[string]any{"v": "VVV"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Text != "ab\nVVVcd" {
		t.Fatalf("got %q", out.Text)
	}
	for off, want := range map[int][2]int{0: {1, 1}, 1: {1, 2}, 3: {2, 1}, 5: {2, 1}, 6: {2, 10}, 7: {2, 11}} {
		l, c := out.SourcePos(off)
		if l != want[0] || c != want[1] {
			t.Errorf("output offset %d maps to %d:%d, want %d:%d", off, l, c, want[0], want[1])
		}
	}
}

func TestSetCachesAndConfines(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "conn", "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conn", "templates", "a.json"), []byte(`"{{@ x @}}"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.json"), []byte(`"s"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "secret.json"), filepath.Join(dir, "conn", "templates", "link.json")); err != nil {
		t.Fatal(err)
	}
	s := NewSet(filepath.Join(dir, "conn"))
	a1, err := s.Get("templates/a.json")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := s.Get("templates/a.json")
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 {
		t.Error("second Get compiled the template again")
	}
	for _, bad := range []string{"../secret.json", "templates/../../secret.json", "/etc/passwd", "templates/link.json", "templates/missing.json", ""} {
		if _, err := s.Get(bad); err == nil {
			t.Errorf("Get(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), bad) && bad != "" {
			t.Errorf("error %q does not name %q", err, bad)
		}
	}
}

func TestConcurrentRender(t *testing.T) {
	tpl, err := Compile("x", `{{% for i in range(3) %}}{{@ i @}}{{@ v @}}{{% endfor %}}`)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	for i := range 8 {
		go func() {
			out, err := tpl.Render(map[string]any{"v": i})
			if err != nil {
				out = err.Error()
			}
			done <- out
		}()
	}
	for range 8 {
		if out := <-done; len(out) != 6 {
			t.Errorf("unexpected output %q", out)
		}
	}
}

// FuzzCompileRender feeds arbitrary templates through the tokenizer,
// parser and renderer: nothing may panic, hang, or report an internal
// error, and a successful render of a template without tags is the text.
func FuzzCompileRender(f *testing.F) {
	for _, seed := range []string{
		`{"_id": "{{@ system @}}-{{@ datatype @}}-collect"}`,
		`"{{ {{@ updated_param @}} }}"`,
		`{{% for x in ['a','b'] %}}"{{@ x @}}"{{% if not loop.last %}},{{% endif %}}{{% endfor %}}`,
		`{# c #}{{% raw %}}{{@ r @}}{{% endraw %}}<<@ s @>>`,
		`{{@ a | default("x") ~ b.c[0] if d is defined else -1 @}}`,
		`{{@`, `{#`, `<<%`, `{{% if %}}`, `{% verbatim %}{% endverbatim`,
	} {
		f.Add(seed)
	}
	// Every template of the connector corpus and of the expansion edge
	// cases.
	files := corpus.Glob("*/templates/*.json")
	more, _ := filepath.Glob("../manifest/testdata/_edgecases/*/input/templates/*.json")
	for _, file := range append(files, more...) {
		if data, err := os.ReadFile(file); err == nil && len(data) <= 4096 {
			f.Add(string(data))
		}
	}
	vars := map[string]any{"system": "s", "datatype": "d", "x": []any{"1", int64(2)}, "m": map[string]any{"k": "v"}}
	f.Fuzz(func(t *testing.T, src string) {
		if len(src) > 4096 {
			t.Skip()
		}
		done := make(chan error, 1)
		go func() {
			tpl, err := Compile("f.json", src)
			if err == nil {
				var out string
				out, err = tpl.Render(vars)
				if err == nil && !strings.ContainsAny(src, "{<") && out != normalizeSource(src) {
					err = errors.New("plain text changed: " + out)
				}
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil && strings.Contains(err.Error(), "internal") {
				t.Fatalf("internal error for %q: %v", src, err)
			}
			if err != nil && strings.Contains(err.Error(), "plain text changed") {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("compile/render of %q did not finish within 5s", src)
		}
	})
}
