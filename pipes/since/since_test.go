package since

import (
	"math/big"
	"strings"
	"testing"
)

// smallRats parses a and b with big.Rat when both are decimal numbers
// with exponents small enough for it to expand.
func smallRats(a, b string) (x, y *big.Rat, ok bool) {
	da, ok1 := parseDecimal(a)
	db, ok2 := parseDecimal(b)
	if !ok1 || !ok2 || da.exp > 300 || da.exp < -300 || db.exp > 300 || db.exp < -300 ||
		strings.ContainsAny(a+b, "xXoObB/_") {
		return nil, nil, false
	}
	x, ok1 = new(big.Rat).SetString(a)
	y, ok2 = new(big.Rat).SetString(b)
	return x, y, ok1 && ok2
}

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b    string
		numeric bool
		want    int
	}{
		{"9", "10", true, -1},
		{"9", "10", false, 1}, // as strings
		{"10", "10", true, 0},
		{"-3", "2", true, -1},
		{"1e3", "999", true, 1},
		{"0.1", "0.10", true, 0},
		{"92233720368547758070", "92233720368547758069", true, 1}, // beyond int64
		{"12345678901234567890.000000000000000001", "12345678901234567890", true, 1},
		{"2024-01-02T00:00:00Z", "2024-01-01T23:59:59Z", true, 1},
		{"abc", "10", true, 1},                        // not both numbers: strings
		{"0x10", "9", true, -1},                       // a base prefix is not a number here: strings
		{"1e999999999999", "1e999999999998", true, 1}, // huge exponents are not expanded
		{"-1e-5", "0", true, -1},
		{"-0.0", "0", true, 0},
		{"007", "7.000", true, 0},
		{".5", "0.5", true, 0},
		{"1.", "1", true, 0},
		{"-2", "-10", true, 1},
		{"-2.5", "-2.25", true, -1},
		{"1e", "1", true, 1},    // not a number: strings
		{"1/2", "0.4", true, 1}, // nor is a fraction ("1" > "0")
		{"", "", true, 0},
	} {
		if got := Compare(c.a, c.b, c.numeric); got != c.want {
			t.Errorf("Compare(%q, %q, %v) = %d, want %d", c.a, c.b, c.numeric, got, c.want)
		}
	}
}

func TestMax(t *testing.T) {
	var m Max
	if _, ok := m.Text(); ok {
		t.Fatal("empty Max has a value")
	}
	for _, v := range []string{"5", "12", "3", "1e1", "12.5", "99999999999999999999", "7"} {
		m.Offer(v, true)
	}
	if got, _ := m.Text(); got != "99999999999999999999" {
		t.Errorf("numeric max %q", got)
	}
	var s Max
	for _, v := range []string{"2024-03-01", "2024-12-01", "2024-05-01"} {
		s.Offer(v, false)
	}
	if got, _ := s.Text(); got != "2024-12-01" {
		t.Errorf("string max %q", got)
	}
}

// FuzzCompare checks Compare against big.Rat where both are decimal
// numbers with small exponents, its antisymmetry, and that Max agrees with
// Compare.
func FuzzCompare(f *testing.F) {
	for _, s := range [][2]string{{"1", "2"}, {"1.5", "15e-1"}, {"-0", "0"}, {"2024-01-01", "2023-12-31"}, {"1e400", "1e399"}, {"9223372036854775807", "9223372036854775808"}} {
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, a, b string, numeric bool) {
		if len(a) > 64 || len(b) > 64 {
			return
		}
		ab, ba := Compare(a, b, numeric), Compare(b, a, numeric)
		if ab != -ba {
			t.Fatalf("Compare(%q,%q)=%d but Compare(%q,%q)=%d", a, b, ab, b, a, ba)
		}
		if x, y, ok := smallRats(a, b); numeric && ok && x.Cmp(y) != ab {
			t.Fatalf("Compare(%q,%q)=%d, big.Rat says %d", a, b, ab, x.Cmp(y))
		}
		var m Max
		m.Offer(b, numeric)
		m.Offer(a, numeric)
		got, _ := m.Text()
		want := b
		if ab > 0 {
			want = a
		}
		if got != want {
			t.Fatalf("Max of %q then %q = %q, want %q", b, a, got, want)
		}
	})
}

// BenchmarkMaxOffer offers increasing integer and decimal tokens, as a
// source with supports_since does for every entity.
func BenchmarkMaxOffer(b *testing.B) {
	ints := []string{"1700000000001", "1700000000002", "1700000000003", "1699999999999"}
	decs := []string{"1700000000.001", "1700000000.002", "1700000000.0025", "1699999999.9"}
	b.Run("int", func(b *testing.B) {
		b.ReportAllocs()
		var m Max
		for i := 0; i < b.N; i++ {
			m.Offer(ints[i%len(ints)], true)
		}
	})
	b.Run("decimal", func(b *testing.B) {
		b.ReportAllocs()
		var m Max
		for i := 0; i < b.N; i++ {
			m.Offer(decs[i%len(decs)], true)
		}
	})
}
