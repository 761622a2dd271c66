package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// readmeBlock is a fenced code block of README.md.
type readmeBlock struct {
	lang string // the info string: "sh", "json", "" ...
	line int    // 1-based line of the opening fence
	text string
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	var body []string
	for i, l := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(l, "```") {
			if cur != nil {
				body = append(body, l)
			}
			continue
		}
		if cur == nil {
			cur = &readmeBlock{lang: strings.TrimSpace(strings.TrimPrefix(l, "```")), line: i + 1}
			body = nil
			continue
		}
		cur.text = strings.Join(body, "\n")
		blocks = append(blocks, *cur)
		cur = nil
	}
	return blocks
}

// readmeSkipped are the sh blocks of README.md that the test does not run,
// by their first line, with the reason. Every entry must still be in
// README.md, so the list cannot go stale.
var readmeSkipped = map[string]string{
	"ferry secret set api_key --system acme < key.txt": "needs a Zendesk account and the shared connector corpus",
}

// TestREADMECommands runs every sh block of README.md with bash, from the
// repository root, as a user would: `ferry` (and `go run ./cmd/ferry`) is
// this test binary acting as the CLI, FERRY_DATA is a fresh directory per
// block (a block starting with "# after" goes on in the previous block's),
// and the ports 8089 (fake API) and 9070 (serve) are replaced by free ones.
// `go test` lines are left out: they are the command that runs this test
// (CI runs it). Every other command must succeed.
func TestREADMECommands(t *testing.T) {
	if testing.Short() {
		t.Skip("runs README's examples end to end")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found: README's sh blocks are bash")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	wrapper := fmt.Sprintf("#!/bin/sh\nFERRY_TEST_AS_CLI=1 exec %q \"$@\"\n", self)
	if err := os.WriteFile(filepath.Join(bin, "ferry"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	ran := 0
	data := ""
	for _, b := range readmeBlocks(t) {
		if b.lang != "sh" {
			continue
		}
		first, _, _ := strings.Cut(b.text, "\n")
		if reason, skip := readmeSkipped[first]; skip {
			seen[first] = true
			t.Logf("README.md:%d: not run: %s", b.line, reason)
			continue
		}
		ran++
		if data == "" || !strings.HasPrefix(first, "# after") {
			data = t.TempDir()
		}
		t.Run(fmt.Sprintf("line%d", b.line), func(t *testing.T) {
			ports := map[string]string{"8089": freePort(t), "9070": freePort(t)}
			script := "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
			for _, l := range strings.Split(strings.ReplaceAll(b.text, "\\\n", " "), "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "go test") {
					continue
				}
				l = strings.ReplaceAll(l, "go run ./cmd/ferry", "ferry")
				for from, to := range ports {
					l = strings.ReplaceAll(l, "127.0.0.1:"+from, "127.0.0.1:"+to)
				}
				script += l + "\n"
				if code, _, _ := strings.Cut(l, "#"); strings.HasSuffix(strings.TrimSpace(code), "&") {
					// A server started in the background: wait until it listens.
					for _, port := range ports {
						if strings.Contains(l, "127.0.0.1:"+port) {
							script += fmt.Sprintf("for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/%s) 2>/dev/null && break; sleep 0.05; done\n", port)
						}
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bash, "-c", script)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "FERRY_DATA="+data, "FERRY_TEST_AS_CLI=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("README.md:%d block failed: %v\nscript:\n%s\noutput:\n%s", b.line, err, script, out)
			}
			if len(out) == 0 {
				t.Errorf("README.md:%d block printed nothing", b.line)
			}
		})
	}
	for first := range readmeSkipped {
		if !seen[first] {
			t.Errorf("readmeSkipped lists %q, which is no longer the first line of an sh block of README.md", first)
		}
	}
	if ran == 0 {
		t.Error("no sh block of README.md ran")
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

var flagRe = regexp.MustCompile(`--[a-z][a-z0-9-]*`)

// TestREADMESynopsis checks every "ferry ..." line of README.md's plain
// code blocks (the CLI overview) against the command tree: the command
// exists and every --flag it shows is one of that command's flags. Flag
// lines indented under a command belong to it.
func TestREADMESynopsis(t *testing.T) {
	root := newCLI(io.Discard, io.Discard).rootCmd()
	root.InitDefaultCompletionCmd() // cobra adds it when executing
	root.InitDefaultHelpCmd()
	checked := 0
	for _, b := range readmeBlocks(t) {
		if b.lang != "" {
			continue
		}
		var cmd *cobra.Command
		for i, l := range strings.Split(b.text, "\n") {
			where := fmt.Sprintf("README.md:%d", b.line+1+i)
			trimmed := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(l, "ferry "):
				synopsis := strings.SplitN(l, "  ", 2)[0]
				found, _, err := root.Find(strings.Fields(synopsis)[1:])
				if err != nil || found == root {
					t.Errorf("%s: %q is not a ferry command (%v)", where, l, err)
					cmd = nil
					continue
				}
				cmd = found
				checked++
				checkFlags(t, where, cmd, synopsis)
			case strings.HasPrefix(trimmed, "--") && cmd != nil:
				checkFlags(t, where, cmd, strings.SplitN(trimmed, "  ", 2)[0])
			default:
				cmd = nil
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d command lines found in README.md's CLI overview", checked)
	}
}

func checkFlags(t *testing.T, where string, cmd *cobra.Command, text string) {
	t.Helper()
	// Only the synopsis part: the description after two spaces may name
	// flags of other commands.
	for _, f := range flagRe.FindAllString(text, -1) {
		name := strings.TrimPrefix(f, "--")
		if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil && cmd.PersistentFlags().Lookup(name) == nil {
			t.Errorf("%s: %s has no flag %s", where, cmd.CommandPath(), f)
		}
	}
}
