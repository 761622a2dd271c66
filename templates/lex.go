package templates

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// itemKind says what a lexed piece of template is.
type itemKind uint8

const (
	itemText   itemKind = iota // literal text, copied to the output untouched
	itemOutput                 // {{@ expr @}} / <<@ expr @>>
	itemStmt                   // {{% stmt %}} / <<% stmt %>>
)

// item is one piece of a template: literal text or an expansion tag with its
// expression tokens (the last token is always tkEOF at the end delimiter).
type item struct {
	kind itemKind
	off  int    // byte offset of the text or of the tag's opening delimiter
	text string // itemText only
	toks []token
}

type tokKind uint8

const (
	tkEOF tokKind = iota
	tkName
	tkString
	tkInt
	tkFloat
	tkOp
)

// token is one token of a Jinja expression. For strings val is the
// unescaped value; for numbers and names the source text.
type token struct {
	kind tokKind
	val  string
	off  int
}

func (t token) String() string {
	switch t.kind {
	case tkEOF:
		return "end of tag"
	case tkString:
		return strconv.Quote(t.val)
	}
	return "'" + t.val + "'"
}

// posError is an error at a byte offset of the (normalised) template source;
// Compile turns it into an *Error with file, line and column.
type posError struct {
	off int
	msg string
}

func (e *posError) Error() string { return e.msg }

func errAt(off int, format string, args ...any) *posError {
	return &posError{off: off, msg: fmt.Sprintf(format, args...)}
}

// delims is one dialect's set of delimiters.
type delims struct {
	varStart, varEnd, blockStart, blockEnd string
	endraw                                 *regexp.Regexp
}

var dialects = [...]delims{
	{"{{@", "@}}", "{{%", "%}}", regexp.MustCompile(`\{\{%([-+]?)\s*endraw\s*(-?)%\}\}`)},
	{"<<@", "@>>", "<<%", "%>>", regexp.MustCompile(`<<%([-+]?)\s*endraw\s*(-?)%>>`)},
}

// normalizeSource does what Jinja2's lexer does before tokenizing: every
// "\r\n" and "\r" becomes "\n" and one trailing newline is dropped
// (keep_trailing_newline=False).
func normalizeSource(src string) string {
	if strings.IndexByte(src, '\r') >= 0 {
		src = strings.ReplaceAll(src, "\r\n", "\n")
		src = strings.ReplaceAll(src, "\r", "\n")
	}
	return strings.TrimSuffix(src, "\n")
}

// lexTemplate splits a normalised template source into literal text and
// expansion tags. Comments are dropped, raw blocks become text and the
// whitespace-control markers ("{{@-", "-@}}", ...) are applied.
func lexTemplate(src string) ([]item, error) {
	var items []item
	textStart := 0
	stripNext := false
	addText := func(off int, s string) {
		if stripNext {
			n := len(s)
			s = strings.TrimLeftFunc(s, unicode.IsSpace)
			off += n - len(s)
			stripNext = false
		}
		if s != "" {
			items = append(items, item{kind: itemText, off: off, text: s})
		}
	}
	stripPrev := func() {
		if len(items) > 0 && items[len(items)-1].kind == itemText {
			last := &items[len(items)-1]
			last.text = strings.TrimRightFunc(last.text, unicode.IsSpace)
			if last.text == "" {
				items = items[:len(items)-1]
			}
		}
	}
	i := 0
	for i < len(src) {
		j := strings.IndexAny(src[i:], "{<")
		if j < 0 {
			break
		}
		i += j
		rest := src[i:]
		if strings.HasPrefix(rest, "{#") {
			addText(textStart, src[textStart:i])
			end := strings.Index(rest[2:], "#}")
			if end < 0 {
				return nil, errAt(i, "missing end of comment tag (\"#}\") for the comment opened here")
			}
			body := rest[2 : 2+end]
			if strings.HasPrefix(body, "-") {
				stripPrev()
			}
			if strings.HasSuffix(body, "-") && len(body) > 0 {
				stripNext = true
			}
			i += 2 + end + 2
			textStart = i
			continue
		}
		var d *delims
		kind := itemText
		for k := range dialects {
			switch {
			case strings.HasPrefix(rest, dialects[k].varStart):
				d, kind = &dialects[k], itemOutput
			case strings.HasPrefix(rest, dialects[k].blockStart):
				d, kind = &dialects[k], itemStmt
			}
			if d != nil {
				break
			}
		}
		if d == nil {
			i++
			continue
		}
		addText(textStart, src[textStart:i])
		tagOff := i
		p := i + 3
		end := d.varEnd
		if kind == itemStmt {
			end = d.blockEnd
		}
		if p < len(src) && (src[p] == '-' || src[p] == '+') {
			if src[p] == '-' {
				stripPrev()
			}
			p++
		}
		toks, next, strip, err := lexExpr(src, p, tagOff, end)
		if err != nil {
			if pe, ok := err.(*posError); ok && pe.off != tagOff {
				// Report at the opening delimiter: an unclosed tag is the
				// usual cause of a bad character or string inside it.
				l, c := lineCol(src, pe.off)
				return nil, errAt(tagOff, "%s at line %d column %d inside the %q tag opened here (is it closed with %q?)", pe.msg, l, c, src[tagOff:tagOff+3], end)
			}
			return nil, err
		}
		i = next
		textStart = i
		if kind == itemStmt && len(toks) == 2 && toks[0].kind == tkName && toks[0].val == "raw" {
			// {{% raw %}} ... {{% endraw %}}: the body is literal text.
			loc := d.endraw.FindStringSubmatchIndex(src[i:])
			if loc == nil {
				return nil, errAt(tagOff, "missing %s endraw %s for the raw block opened here", d.blockStart, d.blockEnd)
			}
			body := src[i : i+loc[0]]
			if strip {
				body = strings.TrimLeftFunc(body, unicode.IsSpace)
			}
			if loc[3] > loc[2] && src[i+loc[2]] == '-' {
				body = strings.TrimRightFunc(body, unicode.IsSpace)
			}
			stripNext = false
			if body != "" {
				items = append(items, item{kind: itemText, off: i, text: body})
			}
			strip = loc[5] > loc[4]
			i += loc[1]
			textStart = i
		} else {
			items = append(items, item{kind: kind, off: tagOff, toks: toks})
		}
		stripNext = strip
	}
	addText(textStart, src[textStart:])
	return items, nil
}

// lexExpr tokenizes a Jinja expression starting at p up to the end delimiter
// end. It returns the tokens (ending with tkEOF), the offset just after the
// end delimiter and whether the tag asked to strip the following whitespace.
// As in Jinja2 the end delimiter only counts outside brackets and strings.
func lexExpr(src string, p, tagOff int, end string) (toks []token, next int, strip bool, err error) {
	depth := 0
	var brackets []byte
	for {
		for p < len(src) {
			r, w := utf8.DecodeRuneInString(src[p:])
			if !unicode.IsSpace(r) {
				break
			}
			p += w
		}
		if p >= len(src) {
			return nil, 0, false, errAt(tagOff, "tag opened here is not closed (expected %q before the end of the template)", end)
		}
		rest := src[p:]
		if depth == 0 {
			if strings.HasPrefix(rest, "-"+end) {
				toks = append(toks, token{kind: tkEOF, off: p})
				return toks, p + 1 + len(end), true, nil
			}
			if strings.HasPrefix(rest, end) {
				toks = append(toks, token{kind: tkEOF, off: p})
				return toks, p + len(end), false, nil
			}
		}
		c := rest[0]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			n := 1
			for n < len(rest) && isNameByte(rest[n]) {
				n++
			}
			toks = append(toks, token{kind: tkName, val: rest[:n], off: p})
			p += n
		case c >= '0' && c <= '9':
			n, kind := scanNumber(rest)
			toks = append(toks, token{kind: kind, val: strings.ReplaceAll(rest[:n], "_", ""), off: p})
			p += n
		case c == '"' || c == '\'':
			s, n, e := scanString(rest)
			if e != "" {
				return nil, 0, false, errAt(p, "%s", e)
			}
			toks = append(toks, token{kind: tkString, val: s, off: p})
			p += n
		default:
			op := scanOp(rest)
			if op == "" {
				r, _ := utf8.DecodeRuneInString(rest)
				return nil, 0, false, errAt(p, "unexpected character %q in expression", r)
			}
			switch op {
			case "(", "[", "{":
				depth++
				brackets = append(brackets, op[0])
			case ")", "]", "}":
				want := map[string]byte{")": '(', "]": '[', "}": '{'}[op]
				if depth == 0 || brackets[len(brackets)-1] != want {
					return nil, 0, false, errAt(p, "unexpected '%s'", op)
				}
				depth--
				brackets = brackets[:len(brackets)-1]
			}
			toks = append(toks, token{kind: tkOp, val: op, off: p})
			p += len(op)
		}
	}
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// scanNumber scans a Jinja integer or float literal (digits with optional
// "_" separators, a fraction and an exponent).
func scanNumber(s string) (int, tokKind) {
	digits := func(i int) int {
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '_' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9') {
			i++
		}
		return i
	}
	n := digits(0)
	kind := tkInt
	if n+1 < len(s) && s[n] == '.' && s[n+1] >= '0' && s[n+1] <= '9' {
		n = digits(n + 1)
		kind = tkFloat
	}
	if n < len(s) && (s[n] == 'e' || s[n] == 'E') {
		m := n + 1
		if m < len(s) && (s[m] == '+' || s[m] == '-') {
			m++
		}
		if m < len(s) && s[m] >= '0' && s[m] <= '9' {
			n = digits(m)
			kind = tkFloat
		}
	}
	return n, kind
}

// scanString scans a quoted string literal and decodes Python escapes.
func scanString(s string) (val string, n int, errMsg string) {
	q := s[0]
	var b strings.Builder
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, ""
		case c == '\\' && i+1 < len(s):
			i++
			e := s[i]
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\', '\'', '"':
				b.WriteByte(e)
			case '\n':
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'v':
				b.WriteByte('\v')
			case '0':
				b.WriteByte(0)
			case 'x', 'u', 'U':
				w := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
				if i+w >= len(s) {
					return "", 0, "truncated \\" + string(e) + " escape in string literal"
				}
				v, err := strconv.ParseUint(s[i+1:i+1+w], 16, 32)
				if err != nil || v > unicode.MaxRune {
					return "", 0, "invalid \\" + string(e) + " escape in string literal"
				}
				b.WriteRune(rune(v))
				i += w
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, "unterminated string literal"
}

var operators = []string{"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"}

func scanOp(s string) string {
	for _, op := range operators {
		if strings.HasPrefix(s, op) {
			return op
		}
	}
	return ""
}

// lineCol returns the 1-based line and column (in characters) of a byte
// offset in src.
func lineCol(src string, off int) (line, col int) {
	if off > len(src) {
		off = len(src)
	}
	if off < 0 {
		off = 0
	}
	line = 1 + strings.Count(src[:off], "\n")
	start := strings.LastIndexByte(src[:off], '\n') + 1
	return line, 1 + utf8.RuneCountInString(src[start:off])
}
