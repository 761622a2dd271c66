package since

import (
	"cmp"
	"strconv"
	"strings"
)

// Compare compares two token texts. When numeric is set and both parse as
// decimal numbers they compare as numbers, exactly (integers of any size,
// decimals, exponents of any size, without expanding them); otherwise as
// strings. numeric says whether a is a
// number (a JSON number, or a REST source's text that may hold one).
func Compare(a, b string, numeric bool) int {
	if numeric {
		if x, err := strconv.ParseInt(a, 10, 64); err == nil {
			if y, err := strconv.ParseInt(b, 10, 64); err == nil {
				return cmp.Compare(x, y)
			}
		}
		if x, ok := parseDecimal(a); ok {
			if y, ok := parseDecimal(b); ok {
				return x.cmp(y)
			}
		}
	}
	return strings.Compare(a, b)
}

// decimal is a parsed decimal number: value = sign × 0.digits × 10^exp,
// digits without leading or trailing zeros ("" for zero).
type decimal struct {
	neg    bool
	digits string
	exp    int64
}

// maxExp bounds exponents; beyond it they are clamped (no token is that
// large, and clamping keeps the arithmetic in int64).
const maxExp = 1 << 60

// parseDecimal parses [+-]digits[.digits][(e|E)[+-]digits] (digits on at
// least one side of the point). Anything else is not a number here.
func parseDecimal(s string) (decimal, bool) {
	var d decimal
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		d.neg = s[i] == '-'
		i++
	}
	intStart := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intPart := s[intStart:i]
	fracPart := ""
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		fracPart = s[fs:i]
	}
	if intPart == "" && fracPart == "" {
		return d, false
	}
	var e int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		es := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if e < maxExp {
				e = e*10 + int64(s[i]-'0')
			}
			i++
		}
		if i == es {
			return d, false
		}
		e = min(e, maxExp)
		if eneg {
			e = -e
		}
	}
	if i != len(s) {
		return d, false
	}
	all := intPart
	if fracPart != "" {
		all = intPart + fracPart
	}
	k := 0
	for k < len(all) && all[k] == '0' {
		k++
	}
	digits := strings.TrimRight(all[k:], "0")
	if digits == "" {
		return decimal{}, true // zero, whatever its sign
	}
	d.digits = digits
	d.exp = int64(len(intPart)-k) + e
	return d, true
}

// cmp compares two decimals.
func (x decimal) cmp(y decimal) int {
	xs, ys := x.sign(), y.sign()
	if xs != ys {
		return cmp.Compare(int64(xs), int64(ys))
	}
	if xs == 0 {
		return 0
	}
	c := cmp.Compare(x.exp, y.exp)
	if c == 0 {
		c = strings.Compare(x.digits, y.digits) // no trailing zeros: a prefix is the smaller
	}
	if xs < 0 {
		return -c
	}
	return c
}

func (x decimal) sign() int {
	switch {
	case x.digits == "":
		return 0
	case x.neg:
		return -1
	}
	return 1
}

// Max keeps the greatest token offered, comparing as Compare does. It
// keeps the maximum parsed, so an offer parses only the new value (and
// allocates nothing when both are integers that fit in 64 bits): a source
// offers every entity's _updated.
type Max struct {
	text  string
	set   bool
	isInt bool  // text parsed as an int64
	i     int64 // its value
	dec   decimal
	isDec bool // text parsed as a decimal (decDone)
	// decDone: dec was parsed.
	decDone bool
}

// Offer makes text the maximum if there is none yet or it is greater.
func (m *Max) Offer(text string, numeric bool) {
	if m.set && m.compare(text, numeric) <= 0 {
		return
	}
	*m = Max{text: text, set: true}
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		m.isInt, m.i = true, i
	}
}

// compare is Compare(text, m.text, numeric) with m.text's parse cached.
func (m *Max) compare(text string, numeric bool) int {
	if !numeric {
		return strings.Compare(text, m.text)
	}
	if m.isInt {
		if x, err := strconv.ParseInt(text, 10, 64); err == nil {
			return cmp.Compare(x, m.i)
		}
	}
	if !m.decDone {
		m.dec, m.isDec = parseDecimal(m.text)
		m.decDone = true
	}
	if m.isDec {
		if x, ok := parseDecimal(text); ok {
			return x.cmp(m.dec)
		}
	}
	return strings.Compare(text, m.text)
}

// Text returns the maximum and whether anything was offered.
func (m *Max) Text() (string, bool) { return m.text, m.set }
