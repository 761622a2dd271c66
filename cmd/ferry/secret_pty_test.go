//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrydata/ferry/engine/boltstore"
	"github.com/ferrydata/ferry/engine/secrets"
)

// openPTY opens a pseudo-terminal pair: the master and the slave (what a
// program sees as its terminal).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("opening the slave: %v", err)
	}
	t.Cleanup(func() { s.Close(); m.Close() })
	return m, s
}

// On a terminal, `ferry secret set NAME` prompts and reads the value with
// echo off: the value typed never comes back to the terminal.
func TestSecretSetPromptsWithoutEcho(t *testing.T) {
	master, slave := openPTY(t)
	data := t.TempDir()
	var stderr syncBuffer
	c := newCLI(&strings.Builder{}, &stderr)
	c.getenv = func(string) (string, bool) { return "", false }
	c.stdin = slave
	done := make(chan int, 1)
	go func() { done <- c.run(context.Background(), []string{"secret", "set", "api_key", "--data", data}) }()

	// Type only once echo is off, as a person would after the prompt.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo never turned off; stderr %q", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	const typed = "typed-s3cret"
	if _, err := master.WriteString(typed + "\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("secret set did not return")
	}
	if !strings.Contains(stderr.String(), "Value of secret api_key (not echoed): ") {
		t.Errorf("no prompt: %q", stderr.String())
	}
	// Whatever the terminal shows holds no trace of the value.
	var shown []byte
	for {
		fds := []unix.PollFd{{Fd: int32(master.Fd()), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 200); err != nil || n == 0 {
			break
		}
		buf := make([]byte, 4096)
		n, err := unix.Read(int(master.Fd()), buf)
		if n <= 0 || err != nil {
			break
		}
		shown = append(shown, buf[:n]...)
	}
	if strings.Contains(string(shown), typed) {
		t.Errorf("the terminal echoed the value: %q", shown)
	}
	st, err := boltstore.Open(data, boltstore.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	v, ok, err := secrets.Open(st, data, c.getenv).Get(context.Background(), "", "api_key")
	if err != nil || !ok || v != typed {
		t.Errorf("stored %q %v %v", v, ok, err)
	}
}
