package httpclient

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by [DefaultConfig], [ParseSystem] and [New].
const (
	// DefaultTimeout bounds one attempt (connect, send, read the whole body).
	DefaultTimeout = 30 * time.Second
	// DefaultConnectTimeout bounds dialing and the TLS handshake.
	DefaultConnectTimeout = 30 * time.Second
	// DefaultRateLimitRetries is how often a 429 is retried when the system
	// does not set rate_limiting_retries. Sesam documents no number; Ferry
	// picks 3 so that a burst of 429s does not fail a run at once.
	DefaultRateLimitRetries = 3
	// DefaultRateLimitDelay is the wait before retrying a 429 without
	// Retry-After (SPEC c: rate_limiting_delay defaults to 1 s).
	DefaultRateLimitDelay = time.Second
	// DefaultMaxRetryAfter caps the wait a Retry-After header may impose.
	DefaultMaxRetryAfter = 5 * time.Minute
	// DefaultMaxConcurrency is the number of requests in flight when
	// worker_threads is not set.
	DefaultMaxConcurrency = 4
	// DefaultMaxResponseBytes caps a response body held in memory.
	DefaultMaxResponseBytes = 256 << 20
	// DefaultRefreshWindow is how long before its expiry an OAuth2 access
	// token is refreshed (Sesam's oauth2.refresh_window).
	DefaultRefreshWindow = 30 * time.Second
)

// Config is the HTTP side of one system:rest (or system:url) after $ENV and
// $SECRET resolution. Build it with [ParseSystem] or start from
// [DefaultConfig]; the zero value is usable but does not retry 429s.
//
// Zero values of Timeout, ConnectTimeout, MaxConcurrency, MaxRetryAfter and
// MaxResponseBytes mean "use the default"; zero RateLimitRetries and
// RateLimitDelay mean what they say (no retries, no delay).
type Config struct {
	// SystemID is the system's _id, used in logs and errors.
	SystemID string
	// URLPattern is joined with relative request URLs: the first "%s" is
	// replaced by the relative URL; without "%s" the URL is appended.
	URLPattern string
	// Headers are sent with every request; request headers win over them.
	Headers map[string]string
	// InsecureSkipVerify disables TLS certificate verification
	// (verify_ssl: false). UNSAFE: it allows anyone on the network path to
	// read and change the traffic, credentials included. The field is
	// negative so that the zero Config verifies certificates.
	InsecureSkipVerify bool
	// CustomCAPEM is an extra PEM certificate chain trusted besides the
	// system roots (custom_ca_pem_chain).
	CustomCAPEM string
	// Timeout bounds one attempt, body included (read_timeout; default 30 s).
	Timeout time.Duration
	// ConnectTimeout bounds dialing plus TLS handshake (connect_timeout).
	ConnectTimeout time.Duration
	// Auth is the system's authentication.
	Auth Auth
	// RateLimitRetries is how often a 429 is retried (rate_limiting_retries).
	RateLimitRetries int
	// RateLimitDelay is the wait before retrying a 429 that carries no
	// Retry-After header (rate_limiting_delay).
	RateLimitDelay time.Duration
	// MaxRetryAfter caps the wait imposed by a Retry-After header.
	MaxRetryAfter time.Duration
	// RetryStrategy holds the retry_strategy rules, see the package doc for
	// how a status selects one.
	RetryStrategy []RetryRule
	// MaxConcurrency is the number of requests in flight at once
	// (worker_threads; default 4).
	MaxConcurrency int
	// RequestsPerSecond limits the rate at which attempts start; 0 means
	// unlimited (requests_per_second, a Ferry extension).
	RequestsPerSecond float64
	// MaxResponseBytes caps a response body (default 256 MiB); a larger body
	// is a transport error.
	MaxResponseBytes int64
	// UserAgent is sent unless a header sets User-Agent (default "ferry").
	UserAgent string
}

// DefaultConfig returns the configuration of a system that sets nothing but
// its url_pattern.
func DefaultConfig() Config {
	return Config{
		Timeout:          DefaultTimeout,
		ConnectTimeout:   DefaultConnectTimeout,
		RateLimitRetries: DefaultRateLimitRetries,
		RateLimitDelay:   DefaultRateLimitDelay,
		MaxRetryAfter:    DefaultMaxRetryAfter,
		MaxConcurrency:   DefaultMaxConcurrency,
		MaxResponseBytes: DefaultMaxResponseBytes,
		UserAgent:        "ferry",
	}
}

// AuthKind names an authentication scheme.
type AuthKind string

// Authentication schemes.
const (
	// AuthNone sends no credentials beyond the configured headers.
	AuthNone AuthKind = ""
	// AuthBasic sends HTTP basic credentials (authentication: basic).
	AuthBasic AuthKind = "basic"
	// AuthBearer sends a static bearer token (jwt_token, or an oauth2
	// access_token without a way to renew it).
	AuthBearer AuthKind = "bearer"
	// AuthOAuth2ClientCredentials fetches tokens with the client
	// credentials grant.
	AuthOAuth2ClientCredentials AuthKind = "oauth2_client_credentials"
	// AuthOAuth2RefreshToken starts from an optional access token and
	// renews it with the refresh token grant.
	AuthOAuth2RefreshToken AuthKind = "oauth2_refresh_token"
)

// Auth is a system's authentication. Authorization set by Auth wins over an
// Authorization header from Headers or the request, as in python-requests
// where session auth is applied after the headers.
type Auth struct {
	// Kind selects the scheme; the other fields are read accordingly.
	Kind AuthKind
	// Username and Password are the basic credentials.
	Username, Password string
	// Token is the static bearer token of AuthBearer.
	Token string
	// OAuth2 holds the OAuth2 settings of the two OAuth2 kinds.
	OAuth2 OAuth2
}

// OAuth2 is the oauth2 object of a system.
type OAuth2 struct {
	// TokenURL is the token endpoint.
	TokenURL string
	// ClientID and ClientSecret authenticate the client at the token
	// endpoint (header or form, auto-detected by golang.org/x/oauth2).
	ClientID, ClientSecret string
	// Scopes are requested with the client credentials grant.
	Scopes []string
	// AccessToken is the initial access token (refresh-token flow); it is
	// used until it is rejected with 401, as its expiry is unknown.
	AccessToken string
	// RefreshToken renews the access token. A rotated refresh token
	// returned by the token endpoint replaces it in memory only.
	RefreshToken string
	// RefreshWindow renews a token this long before it expires
	// (refresh_window; default 30 s).
	RefreshWindow time.Duration
	// EndpointParams are extra form parameters sent to the token endpoint
	// (extra).
	EndpointParams map[string]string
}

// RetryRule is one retry_strategy entry: responses whose status is in
// Statuses (or, for the Default rule, any status >= 400 no other rule takes,
// and transport errors) are retried Retries times, Delay apart.
type RetryRule struct {
	// Key is the retry_strategy key as written ("500,502", "default").
	Key string
	// Statuses is the parsed key; empty for the default rule.
	Statuses StatusSet
	// Default marks the "default" key.
	Default bool
	// Retries is the number of retries (after the first attempt).
	Retries int
	// Delay is the wait before each retry.
	Delay time.Duration
	// Settings is the rule's object as configured, so that the pump can map
	// its own keys (max_read_retries, write_retry_delay, ...).
	Settings map[string]any
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

// StatusSet is a set of HTTP status codes as written in Sesam configs:
// "200", "200-299", "200,404", "400-428,430-499".
type StatusSet []StatusRange

// ParseStatusSet parses a comma separated list of codes and inclusive
// ranges.
func ParseStatusSet(s string) (StatusSet, error) {
	var set StatusSet
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("status codes %q: empty element", s)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		l, err := parseStatus(lo)
		if err != nil {
			return nil, fmt.Errorf("status codes %q: %w", s, err)
		}
		h := l
		if isRange {
			if h, err = parseStatus(hi); err != nil {
				return nil, fmt.Errorf("status codes %q: %w", s, err)
			}
			if h < l {
				return nil, fmt.Errorf("status codes %q: range %q is reversed", s, part)
			}
		}
		set = append(set, StatusRange{l, h})
	}
	return set, nil
}

func parseStatus(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status code", s)
	}
	return n, nil
}

// Contains reports whether status is in the set.
func (s StatusSet) Contains(status int) bool {
	for _, r := range s {
		if status >= r.Lo && status <= r.Hi {
			return true
		}
	}
	return false
}

// width is the number of codes of the narrowest range holding status.
func (s StatusSet) width(status int) int {
	w := math.MaxInt
	for _, r := range s {
		if status >= r.Lo && status <= r.Hi {
			w = min(w, r.Hi-r.Lo+1)
		}
	}
	return w
}

// String renders the set in config syntax.
func (s StatusSet) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		if r.Lo == r.Hi {
			parts[i] = strconv.Itoa(r.Lo)
		} else {
			parts[i] = strconv.Itoa(r.Lo) + "-" + strconv.Itoa(r.Hi)
		}
	}
	return strings.Join(parts, ",")
}

// ConfigError is a problem with one key of a system config.
type ConfigError struct {
	// System is the system's _id ("" when unknown).
	System string
	// Key is the dotted path of the offending key ("oauth2.token_url").
	Key string
	// Err says what is wrong.
	Err error
}

// Error implements error.
func (e *ConfigError) Error() string {
	if e.System != "" {
		return fmt.Sprintf("system %s: %s: %v", e.System, e.Key, e.Err)
	}
	return fmt.Sprintf("system config: %s: %v", e.Key, e.Err)
}

// Unwrap returns the underlying error.
func (e *ConfigError) Unwrap() error { return e.Err }

// ParseSystem builds a Config from a system:rest (or system:url) object whose
// $ENV/$SECRET references are already resolved. Keys this package does not
// own (operations, name, metadata, ...) are ignored. Every problem found is
// returned, joined, each naming its key.
//
// Recognised keys: _id, url_pattern (else base_url), verify_ssl,
// custom_ca_pem_chain, headers, authentication ("basic"), username,
// password, jwt_token, oauth2 {client_id, client_secret, token_url,
// access_token, refresh_token, refresh_window, scope|scopes, extra},
// rate_limiting_retries, rate_limiting_delay, retry_strategy,
// worker_threads, requests_per_second, connect_timeout, read_timeout.
// Durations are in seconds (numbers, decimals allowed, or numeric strings).
//
// Auth selection: oauth2 with a refresh_token is the refresh-token flow;
// oauth2 with token_url and client_id otherwise is client credentials (an
// access_token given too is used first); oauth2 with only an access_token,
// or jwt_token, is a static bearer token; authentication "basic" or a
// username is basic auth. Other authentication values (digest, ntlm) and the
// tripletex object are rejected rather than silently sending no credentials.
func ParseSystem(cfg map[string]any) (Config, error) {
	c := DefaultConfig()
	p := parser{}
	c.SystemID = p.str(cfg, "_id")
	p.system = c.SystemID

	c.URLPattern = p.str(cfg, "url_pattern")
	if c.URLPattern == "" {
		c.URLPattern = p.str(cfg, "base_url")
	}
	if v, ok := p.boolean(cfg, "verify_ssl"); ok {
		c.InsecureSkipVerify = !v
	}
	c.CustomCAPEM = p.str(cfg, "custom_ca_pem_chain")
	c.Headers = p.stringMap(cfg, "headers")
	if d, ok := p.seconds(cfg, "read_timeout"); ok && d > 0 {
		c.Timeout = d
	}
	if d, ok := p.seconds(cfg, "connect_timeout"); ok && d > 0 {
		c.ConnectTimeout = d
	}
	if n, ok := p.integer(cfg, "rate_limiting_retries"); ok {
		if n < 0 {
			p.fail("rate_limiting_retries", errors.New("must not be negative"))
		}
		c.RateLimitRetries = n
	}
	if d, ok := p.seconds(cfg, "rate_limiting_delay"); ok {
		c.RateLimitDelay = d
	}
	if n, ok := p.integer(cfg, "worker_threads"); ok {
		if n < 1 {
			p.fail("worker_threads", errors.New("must be at least 1"))
		}
		c.MaxConcurrency = n
	}
	if f, ok := p.number(cfg, "requests_per_second"); ok {
		if f < 0 {
			p.fail("requests_per_second", errors.New("must not be negative"))
		}
		c.RequestsPerSecond = f
	}
	c.RetryStrategy = p.retryStrategy(cfg)
	c.Auth = p.auth(cfg)
	return c, p.err()
}

type parser struct {
	system string
	errs   []error
}

func (p *parser) fail(key string, err error) {
	p.errs = append(p.errs, &ConfigError{System: p.system, Key: key, Err: err})
}

func (p *parser) err() error { return errors.Join(p.errs...) }

func (p *parser) str(m map[string]any, key string) string {
	return p.strAt(m, key, key)
}

func (p *parser) strAt(m map[string]any, key, path string) string {
	v, ok := m[key]
	if !ok || v == nil {
		return ""
	}
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		return strconv.Itoa(v)
	}
	p.fail(path, fmt.Errorf("expected a string, got %T", v))
	return ""
}

func (p *parser) boolean(m map[string]any, key string) (bool, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		return false, false
	}
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(v)); err == nil {
			return b, true
		}
	}
	p.fail(key, fmt.Errorf("expected a boolean, got %v", describe(v)))
	return false, false
}

func (p *parser) numberAt(m map[string]any, key, path string) (float64, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		return 0, false
	}
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = strings.TrimSpace(v)
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	default:
		p.fail(path, fmt.Errorf("expected a number, got %v", describe(v)))
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.fail(path, errors.New("expected a number, got a non-numeric string"))
		return 0, false
	}
	return f, true
}

func (p *parser) number(m map[string]any, key string) (float64, bool) {
	return p.numberAt(m, key, key)
}

func (p *parser) integerAt(m map[string]any, key, path string) (int, bool) {
	f, ok := p.numberAt(m, key, path)
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		p.fail(path, fmt.Errorf("expected an integer, got %v", f))
		return 0, false
	}
	return int(f), true
}

func (p *parser) integer(m map[string]any, key string) (int, bool) {
	return p.integerAt(m, key, key)
}

func (p *parser) secondsAt(m map[string]any, key, path string) (time.Duration, bool) {
	f, ok := p.numberAt(m, key, path)
	if !ok {
		return 0, false
	}
	if f < 0 || f > math.MaxInt64/float64(time.Second) {
		p.fail(path, fmt.Errorf("%v seconds is out of range", f))
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

func (p *parser) seconds(m map[string]any, key string) (time.Duration, bool) {
	return p.secondsAt(m, key, key)
}

func (p *parser) object(m map[string]any, key string) map[string]any {
	v, ok := m[key]
	if !ok || v == nil {
		return nil
	}
	o, ok := v.(map[string]any)
	if !ok {
		p.fail(key, fmt.Errorf("expected an object, got %v", describe(v)))
		return nil
	}
	return o
}

func (p *parser) stringMap(m map[string]any, key string) map[string]string {
	o := p.object(m, key)
	if o == nil {
		return nil
	}
	out := make(map[string]string, len(o))
	for k := range o {
		if o[k] == nil {
			continue
		}
		out[k] = p.strAt(o, k, key+"."+k)
	}
	return out
}

func (p *parser) retryStrategy(cfg map[string]any) []RetryRule {
	o := p.object(cfg, "retry_strategy")
	if o == nil {
		return nil
	}
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var rules []RetryRule
	for _, k := range keys {
		path := "retry_strategy." + k
		r := RetryRule{Key: k}
		if k == "default" {
			r.Default = true
		} else {
			set, err := ParseStatusSet(k)
			if err != nil {
				p.fail(path, err)
				continue
			}
			r.Statuses = set
		}
		switch v := o[k].(type) {
		case map[string]any:
			r.Settings = v
			for _, rk := range []string{"retries", "max_retries", "max_read_retries"} {
				if n, ok := p.integerAt(v, rk, path+"."+rk); ok {
					r.Retries = n
					break
				}
			}
			for _, dk := range []string{"delay", "retry_delay", "read_retry_delay"} {
				if d, ok := p.secondsAt(v, dk, path+"."+dk); ok {
					r.Delay = d
					break
				}
			}
		default:
			// Shorthand: a bare number is the retry count.
			n, ok := p.integerAt(o, k, path)
			if !ok {
				continue
			}
			r.Retries = n
		}
		if r.Retries < 0 {
			p.fail(path, errors.New("retries must not be negative"))
			continue
		}
		rules = append(rules, r)
	}
	return rules
}

func (p *parser) auth(cfg map[string]any) Auth {
	if o := p.object(cfg, "tripletex"); o != nil {
		p.fail("tripletex", errors.New(`not supported: authentication "tripletex" (Ferry supports basic, oauth2 and jwt_token; or set the credentials in headers)`))
	}
	if o := p.object(cfg, "oauth2"); o != nil {
		return p.oauth2(o)
	}
	if tok := p.str(cfg, "jwt_token"); tok != "" {
		return Auth{Kind: AuthBearer, Token: tok}
	}
	kind := strings.ToLower(p.str(cfg, "authentication"))
	user, pass := p.str(cfg, "username"), p.str(cfg, "password")
	switch kind {
	case "basic":
		if user == "" {
			p.fail("username", errors.New("required with authentication basic"))
		}
		return Auth{Kind: AuthBasic, Username: user, Password: pass}
	case "":
		if user != "" {
			return Auth{Kind: AuthBasic, Username: user, Password: pass}
		}
		return Auth{}
	default:
		p.fail("authentication", fmt.Errorf("not supported: authentication %q (Ferry supports basic with username/password, oauth2 and jwt_token; or set an Authorization header in headers)", kind))
		return Auth{}
	}
}

func (p *parser) oauth2(o map[string]any) Auth {
	var a OAuth2
	get := func(k string) string { return p.strAt(o, k, "oauth2."+k) }
	a.TokenURL = get("token_url")
	a.ClientID = get("client_id")
	a.ClientSecret = get("client_secret")
	a.AccessToken = get("access_token")
	a.RefreshToken = get("refresh_token")
	a.RefreshWindow = DefaultRefreshWindow
	if d, ok := p.secondsAt(o, "refresh_window", "oauth2.refresh_window"); ok {
		a.RefreshWindow = d
	}
	for _, k := range []string{"scope", "scopes"} {
		switch v := o[k].(type) {
		case nil:
		case string:
			a.Scopes = append(a.Scopes, strings.Fields(v)...)
		case []any:
			for i, s := range v {
				str, ok := s.(string)
				if !ok {
					p.fail(fmt.Sprintf("oauth2.%s[%d]", k, i), fmt.Errorf("expected a string, got %v", describe(s)))
					continue
				}
				a.Scopes = append(a.Scopes, str)
			}
		default:
			p.fail("oauth2."+k, fmt.Errorf("expected a string or a list of strings, got %v", describe(v)))
		}
	}
	if extra := p.object(o, "extra"); extra != nil {
		a.EndpointParams = make(map[string]string, len(extra))
		for k := range extra {
			a.EndpointParams[k] = p.strAt(extra, k, "oauth2.extra."+k)
		}
	}
	switch {
	case a.RefreshToken != "":
		if a.TokenURL == "" {
			p.fail("oauth2.token_url", errors.New("required with refresh_token"))
		}
		return Auth{Kind: AuthOAuth2RefreshToken, OAuth2: a}
	case a.TokenURL != "" && a.ClientID != "":
		return Auth{Kind: AuthOAuth2ClientCredentials, OAuth2: a}
	case a.AccessToken != "":
		return Auth{Kind: AuthBearer, Token: a.AccessToken}
	default:
		p.fail("oauth2", errors.New("needs refresh_token and token_url, token_url and client_id, or access_token"))
		return Auth{}
	}
}

// describe names a JSON value's kind without echoing it: the value may be a
// resolved secret.
func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64, int, int64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
