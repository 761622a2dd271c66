package jinja

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"

	"github.com/ferrydata/ferry/templates/strftime"
)

// datetime is what now() returns: a UTC instant that prints like Python's
// str(datetime) ("2024-01-02 03:04:05.123456+00:00") and offers the
// methods isoformat(), timestamp() and strftime(format).
type datetime struct{ t time.Time }

// String renders the instant like Python's str(datetime).
func (d datetime) String() string { return d.format(" ") }

func (d datetime) isoformat() string { return d.format("T") }

func (d datetime) format(sep string) string {
	t := d.t
	s := t.Format("2006-01-02" + sep + "15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	return s + t.Format("-07:00")
}

// GetAttribute implements gonja's AttributeGetter so templates can call
// now().isoformat(), now().timestamp() and now().strftime('%Y').
func (d datetime) GetAttribute(name string) (*exec.Value, bool) {
	switch name {
	case "isoformat":
		return exec.AsValue(func() string { return d.isoformat() }), true
	case "timestamp":
		return exec.AsValue(func() float64 { return float64(d.t.UnixMicro()) / 1e6 }), true
	case "strftime":
		return exec.AsValue(func(f string) string { return strftime.Format(d.t, f) }), true
	case "year":
		return exec.AsValue(d.t.Year()), true
	case "month":
		return exec.AsValue(int(d.t.Month())), true
	case "day":
		return exec.AsValue(d.t.Day()), true
	}
	return exec.AsValue(nil), false
}

// renderState is the per-render bookkeeping behind secret(): the values it
// handed out (scrubbed from error messages) and the resolver's failure.
type renderState struct {
	resolve func(name string) (string, error)
	secrets []string
	err     error
}

// secret is the per-render `secret(name)` function.
func (s *renderState) secret(name string) (string, error) {
	if s.resolve == nil {
		return "", errors.New("secret(): no secret resolver configured")
	}
	v, err := s.resolve(name)
	if err != nil {
		err = fmt.Errorf("secret(%q): %w", name, err)
		if s.err == nil {
			s.err = err
		}
		return "", err
	}
	if v != "" {
		s.secrets = append(s.secrets, v)
	}
	return v, nil
}

// scrub replaces every secret value handed out during the render.
func (s *renderState) scrub(msg string) string {
	for _, v := range s.secrets {
		msg = strings.ReplaceAll(msg, v, "***")
	}
	return msg
}

// b64encode is Sesam's b64encode(s): standard base64 of the UTF-8 bytes.
func b64encode(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}

// hmacSHA256Digest is Sesam's hmacsha256digest(key, msg). Sesam does not
// document the encoding; Ferry returns the lower-case hex digest (the form
// HubSpot-style webhook signatures use). Base64 signatures (Shopify) need
// hmacsha256digest_b64, since the raw MAC bytes cannot be re-encoded from
// the hex text inside a template.
func hmacSHA256Digest(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// hmacSHA256DigestB64 is hmacsha256digest_b64(key, msg): the same MAC in
// standard base64 (the form Shopify webhook signatures use). Ferry extension.
func hmacSHA256DigestB64(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
