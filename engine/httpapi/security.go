package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TokenEnv is the environment variable that sets the API token.
const TokenEnv = "FERRY_API_TOKEN"

// TokenFile is the file in the data directory that holds a generated API
// token (mode 0600).
const TokenFile = "api.token"

// MinRemoteTokenLen is the shortest token accepted when the API listens on
// a non-loopback address.
const MinRemoteTokenLen = 16

// ResolveToken returns the API token: the value of FERRY_API_TOKEN when it
// is set and not empty, else the content of DATA/api.token, else a new
// random token (32 bytes, URL-safe base64) written to DATA/api.token with
// mode 0600; created is true then, so the caller can show it once. A token
// file readable by group or others is refused, as is an empty one.
func ResolveToken(dataDir string, getenv func(string) (string, bool)) (token, source string, created bool, err error) {
	if v, ok := getenv(TokenEnv); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), TokenEnv, false, nil
	}
	path := filepath.Join(dataDir, TokenFile)
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if fi.Mode().Perm()&0o077 != 0 {
			return "", "", false, fmt.Errorf("API token file %s is readable by others (mode %s); chmod 600 it", path, fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", "", false, fmt.Errorf("API token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", "", false, fmt.Errorf("API token file %s is empty; remove it to generate a new token", path)
		}
		return tok, path, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", false, fmt.Errorf("API token file: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", "", false, err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", "", false, fmt.Errorf("data directory %s: %w", dataDir, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", false, fmt.Errorf("writing API token file: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return "", "", false, fmt.Errorf("writing API token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", "", false, fmt.Errorf("writing API token file: %w", err)
	}
	return tok, path, true, nil
}

// IsLoopback reports whether a listen address (host:port) only accepts
// connections from this machine: a loopback IP or "localhost". An empty
// host, 0.0.0.0 and :: listen everywhere.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckListen refuses to serve the API on a non-loopback address without
// authentication (NoAuth) or with a token shorter than
// MinRemoteTokenLen.
func CheckListen(addr string, opts Options) error {
	if IsLoopback(addr) {
		return nil
	}
	if opts.NoAuth || opts.Token == "" {
		return fmt.Errorf("refusing to listen on %s without an API token: anyone who can reach it could run and reset pipes and read every dataset; listen on 127.0.0.1, or drop --no-auth", addr)
	}
	if len(opts.Token) < MinRemoteTokenLen {
		return fmt.Errorf("refusing to listen on %s with an API token of %d characters; use at least %d (or remove %s and let ferry generate one)", addr, len(opts.Token), MinRemoteTokenLen, TokenEnv)
	}
	return nil
}

// hostAllowed reports whether the request's Host names this server: an IP
// literal (a DNS rebinding attack needs a name it controls, so a literal
// address is never one), localhost or a name under .localhost, or a name
// in allowed (".example.com" allows its subdomains, "*" any name).
func hostAllowed(host string, allowed []string) bool {
	if host == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.ToLower(strings.Trim(name, "[]")), ".")
	if net.ParseIP(name) != nil || name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	for _, a := range allowed {
		a = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(a)), ".")
		switch {
		case a == "*" || a == name:
			return true
		case strings.HasPrefix(a, ".") && strings.HasSuffix(name, a):
			return true
		}
	}
	return false
}

// isJSONType reports whether a Content-Type is JSON (application/json or
// a +json type).
func isJSONType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// Sessions of the web browser. The login form checks the token and sets
// a cookie "ferry_session" = "<expiry unix>.<hex HMAC-SHA256(token,
// "ferry-session|<expiry>")>": HttpOnly (no script reads it), SameSite=
// Strict (no other site's page sends it), Path=/. It is not the token
// and stops working when the token changes or it expires.
const (
	sessionCookie = "ferry_session"
	sessionTTL    = 12 * time.Hour
)

func sessionMAC(token string, exp int64) string {
	m := hmac.New(sha256.New, []byte(token))
	fmt.Fprintf(m, "ferry-session|%d", exp)
	return hex.EncodeToString(m.Sum(nil))
}

func newSession(token string, now time.Time) (string, time.Time) {
	exp := now.Add(sessionTTL).Unix()
	return strconv.FormatInt(exp, 10) + "." + sessionMAC(token, exp), time.Unix(exp, 0)
}

func validSession(token, value string, now time.Time) bool {
	if token == "" {
		return false
	}
	expS, mac, ok := strings.Cut(value, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil || now.Unix() >= exp {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(sessionMAC(token, exp)))
}

func bearer(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func tokenEqual(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Access is how `ferry serve` authenticates API clients: the token and
// where it came from, or no authentication.
type Access struct {
	Token   string
	Source  string // FERRY_API_TOKEN or the token file's path
	Created bool   // the token was generated now
	NoAuth  bool
}

// Secure resolves the API token for a server listening on addr (see
// ResolveToken) unless noAuth, and refuses what CheckListen refuses.
func Secure(addr, dataDir string, noAuth bool, getenv func(string) (string, bool)) (Access, error) {
	if noAuth {
		return Access{NoAuth: true}, CheckListen(addr, Options{NoAuth: true})
	}
	tok, src, created, err := ResolveToken(dataDir, getenv)
	if err != nil {
		return Access{}, err
	}
	acc := Access{Token: tok, Source: src, Created: created}
	return acc, CheckListen(addr, Options{Token: tok})
}

// Notice is what serve prints about access once it listens at baseURL
// ("http://127.0.0.1:9070"): a generated token in full (this is the only
// time it is shown) with how to use it, else where the token comes from.
func (a Access) Notice(baseURL string) string {
	var warn string
	if hostport := strings.TrimPrefix(strings.TrimPrefix(baseURL, "http://"), "https://"); !IsLoopback(hostport) {
		warn = fmt.Sprintf("ferry: listening beyond this machine (%s): every request needs the token, and over plain HTTP the token and\n"+
			"  the browser's session cookie cross the network in clear; put a TLS-terminating proxy in front (and pass its\n"+
			"  host name with --allow-host)\n", hostport)
	}
	return a.notice(baseURL) + warn
}

func (a Access) notice(baseURL string) string {
	switch {
	case a.NoAuth:
		return "ferry: WARNING: --no-auth: the API and the browser need no token; anyone on this machine can run and reset pipes\n"
	case a.Created:
		return fmt.Sprintf("ferry: generated an API token into %s (mode 0600; shown only this once):\n\n    %s\n\n"+
			"  API:     curl -H 'Authorization: Bearer <token>' %s/api/pipes\n"+
			"  browser: %s/ (log in with the token)\n"+
			"  Set %s to use a token of your own.\n", a.Source, a.Token, baseURL, baseURL, TokenEnv)
	case a.Source == TokenEnv:
		return fmt.Sprintf("ferry: API token from %s; browser at %s/\n", TokenEnv, baseURL)
	}
	return fmt.Sprintf("ferry: API token in %s (%s overrides it); browser at %s/\n", a.Source, TokenEnv, baseURL)
}
