// Package jinja evaluates the runtime Jinja2 expressions of Ferry's REST
// operations and pipe configs: url, params, headers, payload,
// next_page_link, id_expression, updated_expression, error_expression and
// validation_expression (SPEC §d "REST source", §i "Runtime Jinja").
//
// It owns the choice of engine (gonja v2, a Go port of Jinja2) and keeps it
// private: no gonja type appears in the exported API, so the rest of Ferry
// only sees [Compile], [Template], [Set], [Context] and [RenderValue].
//
// Semantics, decided here and tested in this package:
//
//   - Strings without "{{" or "{%" are constants and never reach the engine.
//   - Undefined names, and missing keys of maps that exist, are errors
//     (Jinja2 StrictUndefined); the error names the template text and
//     matches [ErrUndefined] with errors.Is. `x is defined`, `x is not
//     defined`, `x['k'] is defined` and `x.k is defined` never fail: any
//     expression that cannot be evaluated is "not defined".
//   - Values are Ferry JSON values. Integers that fit in int64 behave as
//     Jinja2 ints; other numbers (decimals, huge integers) behave as floats
//     in arithmetic and comparisons but print, join and serialise with
//     exactly the text they were written with (1.10 stays 1.10).
//   - None renders as the empty string (gonja's behaviour, and what makes
//     `next_page_link: "{{ body.nextPageUrl }}"` stop on a null link);
//     booleans render as True/False; dicts and lists render in Python repr
//     style (use `| tojson` for JSON).
//   - `tojson` follows Jinja2: keys sorted, Python json.dumps separators
//     ", " and ": ", non-ASCII and the HTML-unsafe characters < > & '
//     written as \uXXXX escapes, numbers exactly as written.
//   - Only the `if`/`elif`/`else` and `raw` control structures are
//     available (no for, set, macro, include, import): every runtime
//     template in the Sesam corpus needs no more, and without loops a
//     render's cost is bounded by its size. String repetition, filters and
//     string methods that can grow a value are capped by
//     [Options].MaxOutput, like the rendered output itself.
//   - Inline if (`a if c else b`) is supported where gonja supports it: as
//     the whole of a `{{ }}` output.
package jinja
