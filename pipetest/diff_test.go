package pipetest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestUnifiedFormat: hunks, context and line numbers as diff -u prints
// them (outputs checked against GNU diff 3.8).
func TestUnifiedFormat(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n", "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\n",
			"@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -11,3 +11,4 @@\n k\n l\n m\n+n\n"},
		{"x\ny", "x\nz\n", "@@ -1,2 +1,2 @@\n x\n-y\n\\ No newline at end of file\n+z\n"},
		// Changes 6 kept lines apart share a hunk (2 × 3 context lines).
		{"1\n2\n3\n4\n5\n6\n7\n8\n", "0\n2\n3\n4\n5\n6\n7\n9\n", "@@ -1,8 +1,8 @@\n-1\n+0\n 2\n 3\n 4\n 5\n 6\n 7\n-8\n+9\n"},
		{"", "a\n", "@@ -0,0 +1 @@\n+a\n"},
		{"a\n", "", "@@ -1 +0,0 @@\n-a\n"},
	} {
		got := Unified("A", "B", tc.a, tc.b, 3)
		if want := "--- A\n+++ B\n" + tc.want; got != want {
			t.Errorf("Unified(%q, %q) =\n%s\nwant\n%s", tc.a, tc.b, got, want)
		}
	}
	if d := Unified("A", "B", "same\n", "same\n", 3); d != "" {
		t.Errorf("equal texts: %q", d)
	}
}

// TestScriptMinimal checks the edit script against a brute-force longest
// common subsequence on random small inputs: it turns a into b and makes
// the fewest changes.
func TestScriptMinimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	gen := func() []string {
		n := r.IntN(12)
		out := make([]string, n)
		for i := range out {
			out[i] = string(rune('a'+r.IntN(3))) + "\n"
		}
		return out
	}
	for range 3000 {
		a, b := gen(), gen()
		ops := script(a, b)
		var gotA, gotB []string
		changes := 0
		for _, o := range ops {
			if o.kind != '+' {
				gotA = append(gotA, o.line)
			}
			if o.kind != '-' {
				gotB = append(gotB, o.line)
			}
			if o.kind != ' ' {
				changes++
			}
		}
		if strings.Join(gotA, "") != strings.Join(a, "") || strings.Join(gotB, "") != strings.Join(b, "") {
			t.Fatalf("script(%q, %q) = %v does not turn a into b", a, b, ops)
		}
		if want := len(a) + len(b) - 2*lcs(a, b); changes != want {
			t.Fatalf("script(%q, %q): %d changes, want %d", a, b, changes, want)
		}
	}
}

func lcs(a, b []string) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}

// TestScriptLargeFallback: beyond maxEdits the middle is replaced as a
// block, still a correct script.
func TestScriptLargeFallback(t *testing.T) {
	// Every other line shared, every other one changed: more edits than
	// the search may make.
	var a, b []string
	for i := range maxEdits + 10 {
		a = append(a, "same\n", fmt.Sprintf("a%d\n", i))
		b = append(b, "same\n", fmt.Sprintf("b%d\n", i))
	}
	ops := script(a, b)
	if len(ops) != len(a)+len(b)-1 || ops[0].kind != ' ' || ops[1].kind != '-' || ops[len(ops)-1].kind != '+' {
		t.Errorf("fallback script of %d ops: %v ...", len(ops), ops[:3])
	}
	// Texts without a line in common are one replaced block at once.
	if ops := script([]string{"a\n", "b\n"}, []string{"c\n"}); len(ops) != 3 || ops[2].kind != '+' {
		t.Errorf("disjoint: %v", ops)
	}
}

func BenchmarkUnified(b *testing.B) {
	var x, y strings.Builder
	for i := range 20000 {
		line := strings.Repeat("x", i%40) + "\n"
		x.WriteString(line)
		if i%500 == 0 {
			y.WriteString("changed\n")
		} else {
			y.WriteString(line)
		}
	}
	for b.Loop() {
		Unified("a", "b", x.String(), y.String(), 3)
	}
}
