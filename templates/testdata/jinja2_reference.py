# Generates jinja2_reference.json: run with python3 (Jinja2 3.1.6) and redirect stdout.
# The environment is the one sesam-py builds for connector expansion.
import json
from jinja2 import Environment, DictLoader, select_autoescape
cases = [
 ('{{@ s @}}', {'s': 'abc'}),
 ('{{@ n @}}', {'n': 5}),
 ('{{@ f @}}', {'f': 1.5}),
 ('{{@ f @}}', {'f': 1e16}),
 ('{{@ f @}}', {'f': 1e-5}),
 ('{{@ f @}}', {'f': 100.0}),
 ('{{@ f @}}', {'f': 123456789.123}),
 ('{{@ b @}}', {'b': True}),
 ('{{@ none @}}', {'none': None}),
 ('{{@ l @}}', {'l': ['a', 1, True, None, 2.5, "it's", 'q"', 'x\'y"z']}),
 ('{{@ d @}}', {'d': {'b': 1, 'a': 'x'}}),
 ('[{{@ missing @}}]', {}),
 ('{{@ 1 + 2 * 3 @}}', {}),
 ('{{@ 7 // 2 @}} {{@ -7 // 2 @}} {{@ -7 % 3 @}} {{@ 7 / 2 @}} {{@ 2 ** 10 @}} {{@ 4 / 2 @}}', {}),
 ('{{@ "a" ~ 1 ~ missing ~ none @}}', {'none': None}),
 ('{{@ x | upper @}}{{@ x|lower @}}{{@ x | capitalize @}}{{@ x|title @}}', {'x': 'hello wORLD-foo'}),
 ('{{@ missing | default("d") @}}|{{@ "" | default("e", true) @}}|{{@ x | d("z") @}}', {'x': 'set'}),
 ('{{@ l | join(",") @}}|{{@ l | length @}}|{{@ l | first @}}|{{@ l | last @}}|{{@ l|reverse|list @}}', {'l': [3, 1, 2]}),
 ('{{@ l | sort @}}|{{@ l | max @}}|{{@ l|min @}}|{{@ l|sum @}}|{{@ l|unique|list @}}', {'l': [3, 1, 2, 3]}),
 ('{{@ "42" | int + 1 @}}|{{@ "4.5" | float @}}|{{@ "x" | int @}}|{{@ 3.7 | int @}}|{{@ 2.5|round @}}|{{@ 3.14159|round(2) @}}', {}),
 ('{{@ d | tojson @}}', {'d': {'b': [1, 'x<y'], 'a': None, 'c': "it's"}}),
 ('{{@ s.upper() @}}|{{@ s.split("-") @}}|{{@ s.replace("-", "_") @}}|{{@ s.startswith("a") @}}', {'s': 'a-b-c'}),
 ('{{@ d.items() | list @}}|{{@ d.keys()|list @}}|{{@ d.get("a") @}}|{{@ d.get("zz", 9) @}}|{{@ d.a @}}|{{@ d["b"] @}}', {'d': {'a': 1, 'b': 2}}),
 ('{{% for x in l %}}{{@ loop.index @}}:{{@ x @}}{{% if not loop.last %}},{{% endif %}}{{% endfor %}}', {'l': ['a', 'b', 'c']}),
 ('{{% for x in l %}}{{@ x @}}{{% else %}}empty{{% endfor %}}', {'l': []}),
 ('{{% for x in l if x > 1 %}}{{@ x @}}/{{@ loop.length @}} {{% endfor %}}', {'l': [1, 2, 3]}),
 ('{{% for k, v in d.items() %}}{{@ k @}}={{@ v @}};{{% endfor %}}', {'d': {'a': 1, 'b': 2}}),
 ('{{% for a in l %}}{{% for b in l %}}{{@ loop.depth @}}{{@ a @}}{{@ b @}} {{% endfor %}}{{% endfor %}}', {'l': [1, 2]}),
 ('{{% set x = 3 %}}{{% set a, b = [1, 2] %}}{{@ x @}}{{@ a @}}{{@ b @}}', {}),
 ('{{% if a %}}A{{% elif b %}}B{{% else %}}C{{% endif %}}', {'a': False, 'b': 0}),
 ('{{% if a is defined %}}def{{% endif %}}{{% if m is not defined %}}undef{{% endif %}}{{% if n is none %}}none{{% endif %}}', {'a': 1, 'n': None}),
 ('{{@ "yes" if x else "no" @}}|{{@ "y" if not x @}}|', {'x': 0}),
 ('{{@ 1 < 2 < 3 @}}{{@ 2 in [1,2] @}}{{@ "b" in "abc" @}}{{@ 3 not in [1] @}}{{@ "a" in d @}}', {'d': {'a': 1}}),
 ('{{@ a and b @}}|{{@ a or b @}}|{{@ not a @}}', {'a': '', 'b': 'B'}),
 ('x {{@- s -@}} y', {'s': 'S'}),
 ('a\n{{%- if true -%}}\n  b\n{{%- endif %}}\n', {}),
 ('{# comment #}a{#- c -#}  b', {}),
 ('{{% raw %}}{{@ not rendered @}}{{% endraw %}}', {}),
 ('<<@ s @>>-<<% if true %>>yes<<% endif %>>', {'s': 'x'}),
 ('{{ {{@ p @}} }} {% if a %}{{ a }}{% endif %} }}}', {'p': 'updatedDate'}),
 ('{{{@ s @}}}', {'s': 'x'}),
 ('{{@ "a\\tb\\n" @}}|{{@ \'\\u00e9\' @}}', {}),
 ('{{@ (1, 2) @}}|{{@ (1,) @}}|{{@ [] @}}|{{@ {"k": [1]} @}}', {}),
 ('{{@ 10000000000000000 @}}|{{@ 1.0 @}}|{{@ 1e3 @}}|{{@ 0.1 + 0.2 @}}', {}),
 ('{{@ -x @}}|{{@ x * "ab" @}}|{{@ [1] + [2] @}}|{{@ "ab" * 2 @}}', {'x': 2}),
 ('{{@ my-param @}}', {'my-param': '$ENV(my-param)'}),
 ('{{@ undefined_thing.attr @}}', {}),
 ('{{@ d.missing @}}|{{@ d.missing is defined @}}', {'d': {}}),
 ('{{@ 1 + "a" @}}', {}),
 ('{{@ x @', {}),
 ('{{% if x %}}a', {}),
 ('{{% endif %}}', {}),
 ('{{% macro m() %}}{{% endmacro %}}', {}),
 ('{{@ x | nosuchfilter @}}', {}),
 ('{# unclosed', {}),
 ('{{@ "unterminated @}}', {}),
 ('{{@ l[0] @}}{{@ l[-1] @}}{{@ l.1 @}}|{{@ l[5] @}}|{{@ s[1] @}}', {'l': [1,2,3], 's': 'abc'}),
 ('{{@ 1 == 1.0 @}}{{@ true == 1 @}}{{@ none == none @}}{{@ "1" == 1 @}}', {}),
 ('{{@ x is divisibleby 3 @}}{{@ x is odd @}}{{@ x is even @}}{{@ x is number @}}{{@ "s" is string @}}', {'x': 9}),
 ('{{@ 5 is eq 5 @}}{{@ 5 is ge 6 @}}{{@ "A" is upper @}}', {}),
 ('{{@ "%s" @}}{{@ x ~ "" @}}', {'x': 1.25}),
 ('{{@ [1, 2] | join @}}|{{@ "abc" | list @}}|{{@ "  x  " | trim @}}|{{@ "a.b" | replace(".", "/") @}}', {}),
 ('{{@ x | string @}}{{@ x | tojson @}}', {'x': True}),
 ('{{@ "x" ~ @}}', {}),
 ('{{@ @}}', {}),
]
out = []
for src, vars in cases:
    env = Environment(loader=DictLoader({'t.json': src}), autoescape=select_autoescape(), variable_start_string="{{@", variable_end_string="@}}", block_start_string="{{%", block_end_string="%}}")
    if src.startswith('<<'):
        env = Environment(loader=DictLoader({'t.json': src}), autoescape=select_autoescape(), variable_start_string="<<@", variable_end_string="@>>", block_start_string="<<%", block_end_string="%>>")
    try:
        r = env.get_template('t.json').render(**vars)
        out.append({'src': src, 'vars': vars, 'out': r})
    except Exception as e:
        out.append({'src': src, 'vars': vars, 'err': type(e).__name__ + ': ' + str(e)})
print(json.dumps(out, indent=1))
