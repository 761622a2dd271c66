package dtl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	pystrftime "github.com/ferrydata/ferry/templates/strftime"
)

// isoLayouts are the ISO 8601 shapes the "datetime" function accepts. Values
// without an offset are taken as UTC, as Sesam does.
var isoLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseTransitTime parses a "~t" transit datetime (or a bare ISO string).
func parseTransitTime(s string) (time.Time, error) {
	return parseISOTime(strings.TrimPrefix(s, prefixDatetime))
}

func parseISOTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range isoLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not an ISO 8601 datetime: %q", s)
}

// toDatetimeValue converts one value the way "datetime" does: transit and
// ISO strings parse, integers are nanoseconds since the epoch.
func toDatetimeValue(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		t, err := parseTransitTime(x)
		if err != nil {
			return nil, false
		}
		return formatTransitTime(t), true
	case bool, nil:
		return nil, false
	}
	if isInteger(v) {
		n, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
		if err != nil {
			return nil, false
		}
		return formatTransitTime(time.Unix(0, n)), true
	}
	return nil, false
}

var monthNames = []string{"January", "February", "March", "April", "May", "June", "July",
	"August", "September", "October", "November", "December"}
var dayNames = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}

// strftimeDirectives lists the Python directives this package understands,
// for both parsing and formatting.
const strftimeDirectives = "YmdHMSfzZybBaAjpI%"

// checkStrftime validates a Python strftime/strptime format at compile time.
func checkStrftime(format string) error {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		if i+1 >= len(format) {
			return errors.New("format ends with a lone %")
		}
		i++
		if !strings.ContainsRune(strftimeDirectives, rune(format[i])) {
			return fmt.Errorf("unsupported format directive %%%c", format[i])
		}
	}
	return nil
}

// strptime parses s with a Python strptime format. The whole string must
// match. Naive results are UTC; %z offsets are converted to UTC.
func strptime(format, s string) (time.Time, error) {
	year, month, day := 1900, 1, 1
	hour, minute, sec, nsec := 0, 0, 0, 0
	yday := -1
	pm, hasAMPM := false, false
	loc := time.UTC
	pos := 0
	fail := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("%q does not match format %q", s, format)
	}
	num := func(maxw int) (int, bool) {
		start := pos
		for pos < len(s) && pos-start < maxw && s[pos] >= '0' && s[pos] <= '9' {
			pos++
		}
		if pos == start {
			return 0, false
		}
		n, _ := strconv.Atoi(s[start:pos])
		return n, true
	}
	name := func(names []string) (int, bool) {
		for i, n := range names {
			for _, cand := range []string{n, n[:3]} {
				if len(s)-pos >= len(cand) && strings.EqualFold(s[pos:pos+len(cand)], cand) {
					pos += len(cand)
					return i, true
				}
			}
		}
		return 0, false
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			if unicode.IsSpace(rune(c)) {
				for i+1 < len(format) && unicode.IsSpace(rune(format[i+1])) {
					i++
				}
				if pos >= len(s) || !unicode.IsSpace(rune(s[pos])) {
					return fail()
				}
				for pos < len(s) && unicode.IsSpace(rune(s[pos])) {
					pos++
				}
				continue
			}
			if pos >= len(s) || s[pos] != c {
				return fail()
			}
			pos++
			continue
		}
		i++
		if i >= len(format) {
			return fail()
		}
		var ok bool
		switch format[i] {
		case 'Y':
			year, ok = num(4)
		case 'y':
			var y int
			y, ok = num(2)
			if y < 69 {
				year = 2000 + y
			} else {
				year = 1900 + y
			}
		case 'm':
			month, ok = num(2)
		case 'd':
			day, ok = num(2)
		case 'H':
			hour, ok = num(2)
		case 'I':
			hour, ok = num(2)
		case 'M':
			minute, ok = num(2)
		case 'S':
			sec, ok = num(2)
		case 'j':
			yday, ok = num(3)
		case 'f':
			start := pos
			var f int
			f, ok = num(6)
			if ok {
				digits := pos - start
				for ; digits < 9; digits++ {
					f *= 10
				}
				nsec = f
			}
		case 'p':
			switch {
			case len(s)-pos >= 2 && strings.EqualFold(s[pos:pos+2], "AM"):
				ok, hasAMPM = true, true
			case len(s)-pos >= 2 && strings.EqualFold(s[pos:pos+2], "PM"):
				ok, hasAMPM, pm = true, true, true
			}
			pos += 2
		case 'b', 'B':
			var m int
			m, ok = name(monthNames)
			month = m + 1
		case 'a', 'A':
			_, ok = name(dayNames)
		case 'z':
			loc, ok = parseOffset(s, &pos)
		case 'Z':
			for _, z := range []string{"UTC", "GMT", "Z"} {
				if strings.HasPrefix(s[pos:], z) {
					pos += len(z)
					ok = true
					break
				}
			}
		case '%':
			ok = pos < len(s) && s[pos] == '%'
			pos++
		}
		if !ok {
			return fail()
		}
	}
	if pos != len(s) {
		return fail()
	}
	if hasAMPM {
		if hour < 1 || hour > 12 {
			return fail()
		}
		hour %= 12
		if pm {
			hour += 12
		}
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 61 {
		return fail()
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if yday > 0 {
		t = time.Date(year, 1, 1, hour, minute, sec, nsec, loc).AddDate(0, 0, yday-1)
	}
	if t.Day() != day && yday <= 0 {
		return fail() // e.g. 31 February
	}
	return t.UTC(), nil
}

func parseOffset(s string, pos *int) (*time.Location, bool) {
	p := *pos
	if p < len(s) && s[p] == 'Z' {
		*pos = p + 1
		return time.UTC, true
	}
	if p >= len(s) || (s[p] != '+' && s[p] != '-') {
		return nil, false
	}
	sign := 1
	if s[p] == '-' {
		sign = -1
	}
	p++
	digits := func() (int, bool) {
		if p+2 > len(s) {
			return 0, false
		}
		n, err := strconv.Atoi(s[p : p+2])
		if err != nil {
			return 0, false
		}
		p += 2
		return n, true
	}
	hh, ok := digits()
	if !ok {
		return nil, false
	}
	if p < len(s) && s[p] == ':' {
		p++
	}
	mm, ok := digits()
	if !ok {
		return nil, false
	}
	*pos = p
	return time.FixedZone("", sign*(hh*3600+mm*60)), true
}

// strftime formats t (UTC) with a Python strftime format.
func strftime(format string, t time.Time) string {
	return pystrftime.Format(t.UTC(), format)
}

// datetimePlus adds amount units to t. Units follow Sesam's datetime-plus:
// years, months, weeks, days, hours, minutes, seconds, milliseconds,
// microseconds, nanoseconds (singular forms accepted too).
func datetimePlus(unit string, amount int64, t time.Time) (time.Time, error) {
	switch strings.TrimSuffix(unit, "s") {
	case "year":
		return t.AddDate(int(amount), 0, 0), nil
	case "month":
		return t.AddDate(0, int(amount), 0), nil
	case "week":
		return t.AddDate(0, 0, 7*int(amount)), nil
	case "day":
		return t.AddDate(0, 0, int(amount)), nil
	case "hour":
		return t.Add(time.Duration(amount) * time.Hour), nil
	case "minute":
		return t.Add(time.Duration(amount) * time.Minute), nil
	case "second":
		return t.Add(time.Duration(amount) * time.Second), nil
	case "millisecond":
		return t.Add(time.Duration(amount) * time.Millisecond), nil
	case "microsecond":
		return t.Add(time.Duration(amount) * time.Microsecond), nil
	case "nanosecond":
		return t.Add(time.Duration(amount)), nil
	}
	return t, fmt.Errorf("unknown datetime unit %q", unit)
}

// int64Of returns an integral number as int64.
func int64Of(v any) (int64, bool) {
	iv, ok := toIntegerValue(v)
	if !ok || typeRank(v) != 2 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(iv.(json.Number)), 10, 64)
	return n, err == nil
}
