package httpclient

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Redacted replaces secrets in URLs, errors and logs.
const Redacted = "REDACTED"

// SensitiveName reports whether a query parameter or header name looks like
// it carries a credential: it contains token, secret, passw, signature,
// credential, authorization or cookie, starts or ends with "key" (key,
// api_key, apikey, x-api-key, keyId), or is code, sig or pwd.
func SensitiveName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"token", "secret", "passw", "signature", "credential", "authorization", "cookie"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	if strings.HasSuffix(n, "key") || strings.HasPrefix(n, "key") {
		return true
	}
	switch n {
	case "code", "sig", "pwd":
		return true
	}
	return false
}

// RedactURL returns raw with its userinfo and the values of sensitive query
// parameters (see [SensitiveName]) replaced by REDACTED. The rest of the
// URL keeps its original encoding. A URL that does not parse is reduced to
// its part before the first '?' with any userinfo dropped.
func RedactURL(raw string) string {
	base, query, hasQuery := strings.Cut(raw, "?")
	frag := ""
	if hasQuery {
		query, frag, _ = strings.Cut(query, "#")
	}
	if u, err := url.Parse(base); err == nil && u.User != nil {
		u.User = url.User(Redacted)
		base = u.String()
	} else if err != nil {
		if i := strings.Index(base, "@"); i >= 0 {
			if j := strings.Index(base, "://"); j >= 0 && j < i {
				base = base[:j+3] + Redacted + base[i:]
			}
		}
	}
	if !hasQuery {
		return base
	}
	parts := strings.Split(query, "&")
	for i, part := range parts {
		k, _, hasValue := strings.Cut(part, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if hasValue && SensitiveName(name) {
			parts[i] = k + "=" + Redacted
		}
	}
	out := base + "?" + strings.Join(parts, "&")
	if frag != "" {
		out += "#" + frag
	}
	return out
}

// scrubber removes literal secret values from text. Static secrets come
// from the Config; dynamic ones (fetched OAuth2 tokens) are added as they
// appear.
type scrubber struct {
	mu      sync.RWMutex
	secrets []string
	r       *strings.Replacer
	// extra is applied after the literal secrets (WithRedact); set
	// before the client is used.
	extra func(string) string
}

// minSecretLen keeps the scrubber from replacing short, common strings (a
// password "x" would otherwise blank every x in a message).
const minSecretLen = 4

func newScrubber(cfg Config) *scrubber {
	s := &scrubber{}
	var lits []string
	lits = append(lits, cfg.Auth.Password, cfg.Auth.Token, cfg.Auth.OAuth2.ClientSecret,
		cfg.Auth.OAuth2.AccessToken, cfg.Auth.OAuth2.RefreshToken)
	if cfg.Auth.Kind == AuthBasic && cfg.Auth.Password != "" {
		// An echoed Authorization header carries the pair in base64.
		lits = append(lits, base64.StdEncoding.EncodeToString([]byte(cfg.Auth.Username+":"+cfg.Auth.Password)))
	}
	for k, v := range cfg.Headers {
		if SensitiveName(k) {
			lits = append(lits, v)
			// "Bearer xyz": the token alone may be echoed too.
			if _, tok, ok := strings.Cut(v, " "); ok {
				lits = append(lits, tok)
			}
		}
	}
	for k, v := range cfg.Auth.OAuth2.EndpointParams {
		if SensitiveName(k) {
			lits = append(lits, v)
		}
	}
	if _, q, ok := strings.Cut(cfg.URLPattern, "?"); ok {
		for part := range strings.SplitSeq(q, "&") {
			k, v, _ := strings.Cut(part, "=")
			if SensitiveName(k) && !strings.Contains(v, "%s") {
				lits = append(lits, v)
				if uv, err := url.QueryUnescape(v); err == nil {
					lits = append(lits, uv)
				}
			}
		}
	}
	s.add(lits...)
	return s
}

func (s *scrubber) add(lits ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, l := range lits {
		l = strings.TrimSpace(l)
		if len(l) < minSecretLen || slices.Contains(s.secrets, l) {
			continue
		}
		s.secrets = append(s.secrets, l)
		changed = true
	}
	if !changed {
		return
	}
	// Longest first so that a secret containing another is replaced whole.
	slices.SortFunc(s.secrets, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(s.secrets))
	for _, l := range s.secrets {
		pairs = append(pairs, l, Redacted)
	}
	s.r = strings.NewReplacer(pairs...)
}

func (s *scrubber) scrub(text string) string {
	s.mu.RLock()
	r := s.r
	s.mu.RUnlock()
	if r != nil {
		text = r.Replace(text)
	}
	if s.extra != nil {
		text = s.extra(text)
	}
	return text
}

// url redacts a URL structurally, then literally.
func (s *scrubber) url(raw string) string { return s.scrub(RedactURL(raw)) }
