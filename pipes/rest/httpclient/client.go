package httpclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"
)

// Client sends requests for one REST system. It is safe for concurrent use.
type Client struct {
	cfg    Config
	hc     *http.Client
	log    *slog.Logger
	sleep  func(ctx context.Context, d time.Duration) error
	now    func() time.Time
	scrub  *scrubber
	tokens *tokenCache // nil unless OAuth2
	sem    chan struct{}
	lim    *rate.Limiter // nil = unlimited

	rlRule *RetryRule // rate_limiting_retries x rate_limiting_delay

	pauseMu    sync.Mutex
	pauseUntil time.Time // client-wide wait after a 429
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends requests (and OAuth2 token requests) through hc. The
// TLS settings of Config (InsecureSkipVerify, CustomCAPEM) and
// ConnectTimeout are then hc's business; Config.Timeout still bounds each
// attempt. Meant for tests (httptest.Server.Client) and embedders.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithSleep replaces the function that waits between retries, after a 429
// and before a rate-limited client may proceed. It must return ctx.Err()
// when ctx ends first. Tests use it to observe delays without waiting.
func WithSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.sleep = sleep }
}

// WithClock replaces time.Now for Retry-After dates, pauses and OAuth2
// token expiry.
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithLogger sets the logger (default slog.Default()). Retries are logged at
// Warn, requests at Debug; URLs are redacted and headers never logged.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithRedact adds a redaction applied after the client's own scrubbing to
// every URL, error message and response snippet the client reports: the
// config's Redactor (engine.Redactor.Redact), which knows every secret
// resolved into the config, so that a secret used where the client cannot
// see it is one (an operation URL, a payload) is caught too.
func WithRedact(redact func(string) string) Option {
	return func(c *Client) { c.scrub.extra = redact }
}

// RedactURL returns u as the client reports URLs: RedactURL's structural
// redaction, then the client's known secrets and WithRedact's redaction.
func (c *Client) RedactURL(u string) string { return c.scrub.url(u) }

// New validates cfg, fills its defaults and returns a Client. It does no
// network I/O (tokens are fetched by the first request).
func New(cfg Config, opts ...Option) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = DefaultMaxConcurrency
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "ferry"
	}
	if cfg.Auth.OAuth2.RefreshWindow < 0 {
		cfg.Auth.OAuth2.RefreshWindow = 0
	}
	// Own copies: the caller may reuse its maps and slices.
	cfg.Headers = maps.Clone(cfg.Headers)
	cfg.RetryStrategy = slices.Clone(cfg.RetryStrategy)
	cfg.Auth.OAuth2.Scopes = slices.Clone(cfg.Auth.OAuth2.Scopes)
	cfg.Auth.OAuth2.EndpointParams = maps.Clone(cfg.Auth.OAuth2.EndpointParams)
	if err := validate(cfg); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:   cfg,
		log:   slog.Default(),
		sleep: sleepCtx,
		now:   time.Now,
		scrub: newScrubber(cfg),
		sem:   make(chan struct{}, cfg.MaxConcurrency),
		rlRule: &RetryRule{Key: "rate_limiting", Statuses: StatusSet{{Lo: 429, Hi: 429}},
			Retries: cfg.RateLimitRetries, Delay: cfg.RateLimitDelay},
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		hc, err := newHTTPClient(cfg)
		if err != nil {
			return nil, err
		}
		c.hc = hc
	}
	if cfg.RequestsPerSecond > 0 {
		burst := max(1, int(cfg.RequestsPerSecond))
		c.lim = rate.NewLimiter(rate.Limit(cfg.RequestsPerSecond), burst)
	}
	if cfg.Auth.Kind == AuthOAuth2ClientCredentials || cfg.Auth.Kind == AuthOAuth2RefreshToken {
		c.tokens = newTokenCache(cfg, c.hc, c.now, c.scrub)
	}
	c.log = c.log.With("system", cfg.SystemID)
	return c, nil
}

func validate(cfg Config) error {
	var errs []error
	bad := func(key string, err error) {
		errs = append(errs, &ConfigError{System: cfg.SystemID, Key: key, Err: err})
	}
	if cfg.RateLimitRetries < 0 {
		bad("rate_limiting_retries", errors.New("must not be negative"))
	}
	if cfg.RateLimitDelay < 0 {
		bad("rate_limiting_delay", errors.New("must not be negative"))
	}
	if cfg.RequestsPerSecond < 0 {
		bad("requests_per_second", errors.New("must not be negative"))
	}
	for _, r := range cfg.RetryStrategy {
		if r.Retries < 0 || r.Delay < 0 {
			bad("retry_strategy."+r.Key, errors.New("retries and delay must not be negative"))
		}
		if !r.Default && len(r.Statuses) == 0 {
			bad("retry_strategy."+r.Key, errors.New("no status codes"))
		}
	}
	o := cfg.Auth.OAuth2
	switch cfg.Auth.Kind {
	case AuthNone:
	case AuthBasic:
		if cfg.Auth.Username == "" {
			bad("username", errors.New("required with basic authentication"))
		}
	case AuthBearer:
		if cfg.Auth.Token == "" {
			bad("jwt_token", errors.New("empty bearer token"))
		}
	case AuthOAuth2ClientCredentials:
		if o.TokenURL == "" {
			bad("oauth2.token_url", errors.New("required"))
		}
		if o.ClientID == "" {
			bad("oauth2.client_id", errors.New("required"))
		}
	case AuthOAuth2RefreshToken:
		if o.TokenURL == "" {
			bad("oauth2.token_url", errors.New("required"))
		}
		if o.RefreshToken == "" {
			bad("oauth2.refresh_token", errors.New("required"))
		}
	default:
		bad("authentication", fmt.Errorf("unknown kind %q", cfg.Auth.Kind))
	}
	if o.TokenURL != "" {
		if u, err := url.Parse(o.TokenURL); err != nil || u.Scheme == "" || u.Host == "" {
			bad("oauth2.token_url", errors.New("not an absolute URL"))
		}
	}
	return errors.Join(errs...)
}

func newHTTPClient(cfg Config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = cfg.ConnectTimeout
	tr.MaxIdleConnsPerHost = max(cfg.MaxConcurrency, 2)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.InsecureSkipVerify {
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // verify_ssl: false, documented as unsafe
	}
	if cfg.CustomCAPEM != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(cfg.CustomCAPEM)) {
			return nil, &ConfigError{System: cfg.SystemID, Key: "custom_ca_pem_chain", Err: errors.New("no PEM certificate found")}
		}
		tlsCfg.RootCAs = pool
	}
	tr.TLSClientConfig = tlsCfg
	return &http.Client{Transport: tr}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Request is one rendered request.
type Request struct {
	// Method defaults to GET.
	Method string
	// URL is absolute (http:// or https://, used as is) or relative
	// (joined with Config.URLPattern, see [Client.URL]).
	URL string
	// Params are added to the URL's query string (sorted by name, after
	// any query the URL already has).
	Params url.Values
	// Headers win over Config.Headers; an empty value removes a system
	// header.
	Headers map[string]string
	// Body is sent as is; nil sends no body.
	Body []byte
	// ContentType sets Content-Type when Body is not nil; default
	// application/json unless Headers set Content-Type.
	ContentType string
	// RateLimit, when not nil, replaces the system's rate_limiting_retries
	// and rate_limiting_delay for this request (the REST source, sink and
	// transform accept pipe-level rate_limiting_* keys). A retry_strategy
	// key matching 429 still wins.
	RateLimit *RateLimit
	// NoReplay marks a request that must not be sent twice (an insert
	// without an idempotency key): transport errors and error statuses
	// are not retried whatever retry_strategy says, only 429 (the system
	// refused the request unprocessed) and the OAuth2 401 refresh are.
	NoReplay bool
}

// RateLimit is a 429 retry policy.
type RateLimit struct {
	// Retries is the number of retries of a 429.
	Retries int
	// Delay is the wait when the 429 has no Retry-After header.
	Delay time.Duration
}

// Response is a complete response; the body has been read and closed.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Header holds the response headers.
	Header http.Header
	// Body is the whole response body.
	Body []byte
	// URL is the final request URL (after redirects), unredacted: callers
	// expose it to templates as `url`. Do not log it; use RedactURL.
	URL string
	// Method is the request method.
	Method string
	// Attempts is the number of attempts Do made (retries + 1).
	Attempts int

	scrub *scrubber
}

// URL returns the absolute URL a Request is sent to: an absolute r.URL is
// used as is; otherwise the first "%s" of the URL pattern is replaced by
// r.URL (when the pattern continues with a query, "?a=b", and r.URL has a
// query too, the two are joined with "&"); a pattern without "%s" gets
// r.URL appended, with a "/" between them when neither side has one. Params
// are then appended to the query.
func (c *Client) URL(r Request) (string, error) {
	u := joinURL(c.cfg.URLPattern, r.URL)
	if len(r.Params) > 0 {
		base, frag, _ := strings.Cut(u, "#")
		sep := "?"
		if strings.Contains(base, "?") {
			sep = "&"
			if strings.HasSuffix(base, "?") || strings.HasSuffix(base, "&") {
				sep = ""
			}
		}
		u = base + sep + r.Params.Encode()
		if frag != "" {
			u += "#" + frag
		}
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("%w: URL %s: %v", ErrInvalidRequest, c.scrub.url(u), c.scrub.scrub(unwrapURLError(err).Error()))
	}
	if p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
		return "", fmt.Errorf("%w: URL %s is not an absolute http(s) URL", ErrInvalidRequest, c.scrub.url(u))
	}
	return u, nil
}

func isAbsolute(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

func joinURL(pattern, rel string) string {
	if isAbsolute(rel) || pattern == "" {
		return rel
	}
	if prefix, suffix, ok := strings.Cut(pattern, "%s"); ok {
		if strings.HasPrefix(suffix, "?") && strings.Contains(rel, "?") {
			return prefix + rel + "&" + suffix[1:]
		}
		return prefix + rel + suffix
	}
	if rel == "" || strings.HasPrefix(rel, "?") || strings.HasSuffix(pattern, "/") || strings.HasPrefix(rel, "/") {
		return pattern + rel
	}
	return pattern + "/" + rel
}

// Do sends r, applying authentication, the concurrency and rate limits and
// the retry policy (see the package doc). It returns the final response
// with a nil error for every HTTP status; the error is non-nil only when no
// response was obtained ([*TransportError], [*AuthError],
// [ErrInvalidRequest], or the context's error).
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodGet
	}
	if strings.ContainsAny(method, " \t\r\n") {
		return nil, fmt.Errorf("%w: method %q", ErrInvalidRequest, method)
	}
	u, err := c.URL(r)
	if err != nil {
		return nil, err
	}
	rl := c.rlRule
	if r.RateLimit != nil {
		rl = &RetryRule{Key: "rate_limiting", Statuses: rl.Statuses, Retries: max(r.RateLimit.Retries, 0),
			Delay: max(r.RateLimit.Delay, 0)}
	}
	used := make(map[*RetryRule]int)
	var (
		notBefore  time.Time
		authRetry  bool
		forceToken *oauth2.Token // token rejected by a 401, to be replaced
	)
	for attempt := 1; ; attempt++ {
		resp, tok, err := c.attempt(ctx, method, u, r, notBefore, forceToken)
		forceToken = nil
		if err != nil {
			var ae *AuthError
			if ctx.Err() != nil {
				return nil, fmt.Errorf("system %s: %s %s: %w", c.cfg.SystemID, method, c.scrub.url(u), ctx.Err())
			}
			if errors.As(err, &ae) || errors.Is(err, ErrInvalidRequest) {
				return nil, err
			}
			rule := c.defaultRule()
			if r.NoReplay {
				rule = nil
			}
			if rule == nil || used[rule] >= rule.Retries {
				return nil, &TransportError{System: c.cfg.SystemID, Method: method, URL: c.scrub.url(u),
					Attempts: attempt, Err: err, msg: c.scrub.scrub(err.Error())}
			}
			used[rule]++
			c.log.WarnContext(ctx, "http request failed, retrying", "method", method, "url", c.scrub.url(u),
				"error", c.scrub.scrub(err.Error()), "attempt", attempt, "delay", rule.Delay, "rule", rule.Key)
			notBefore = c.now().Add(rule.Delay)
			continue
		}
		resp.Attempts = attempt
		if resp.Status == http.StatusUnauthorized && c.tokens != nil && !authRetry {
			authRetry = true
			forceToken = tok
			c.log.InfoContext(ctx, "http 401, refreshing oauth2 token", "method", method, "url", c.scrub.url(u))
			continue
		}
		rule := c.ruleFor(resp.Status, rl)
		if r.NoReplay && resp.Status != http.StatusTooManyRequests {
			rule = nil
		}
		if rule == nil || used[rule] >= rule.Retries {
			c.log.DebugContext(ctx, "http request", "method", method, "url", c.scrub.url(u),
				"status", resp.Status, "attempts", attempt)
			return resp, nil
		}
		used[rule]++
		delay := rule.Delay
		if ra, ok := c.retryAfter(resp.Header); ok {
			delay = ra
		}
		c.log.WarnContext(ctx, "http status, retrying", "method", method, "url", c.scrub.url(u),
			"status", resp.Status, "attempt", attempt, "delay", delay, "rule", rule.Key)
		notBefore = c.now().Add(delay)
		if resp.Status == http.StatusTooManyRequests {
			c.pause(notBefore)
		}
	}
}

// ruleFor picks the retry rule for a status (package doc, "Retries").
func (c *Client) ruleFor(status int, rateLimit *RetryRule) *RetryRule {
	var best *RetryRule
	bestWidth := 0
	for i := range c.cfg.RetryStrategy {
		r := &c.cfg.RetryStrategy[i]
		if r.Default || !r.Statuses.Contains(status) {
			continue
		}
		if w := r.Statuses.width(status); best == nil || w < bestWidth {
			best, bestWidth = r, w
		}
	}
	if best != nil {
		return best
	}
	if status == http.StatusTooManyRequests {
		return rateLimit
	}
	if status >= 400 {
		return c.defaultRule()
	}
	return nil
}

func (c *Client) defaultRule() *RetryRule {
	for i := range c.cfg.RetryStrategy {
		if c.cfg.RetryStrategy[i].Default {
			return &c.cfg.RetryStrategy[i]
		}
	}
	return nil
}

// retryAfter parses Retry-After (delta seconds or an HTTP date), capped at
// MaxRetryAfter.
func (c *Client) retryAfter(h http.Header) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || math.IsNaN(secs) {
			return 0, false
		}
		d = time.Duration(min(secs, c.cfg.MaxRetryAfter.Seconds()) * float64(time.Second))
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(c.now()), 0)
	} else {
		return 0, false
	}
	return min(d, c.cfg.MaxRetryAfter), true
}

func (c *Client) pause(until time.Time) {
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()
	if until.After(c.pauseUntil) {
		c.pauseUntil = until
	}
}

// wait sleeps until notBefore and the client-wide pause have passed, then
// until the rate limiter allows an attempt.
func (c *Client) wait(ctx context.Context, notBefore time.Time) error {
	c.pauseMu.Lock()
	until := c.pauseUntil
	c.pauseMu.Unlock()
	if notBefore.After(until) {
		until = notBefore
	}
	if d := until.Sub(c.now()); d > 0 {
		if err := c.sleep(ctx, d); err != nil {
			return err
		}
	}
	if c.lim != nil {
		if err := c.lim.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	return ctx.Err()
}

// attempt makes one attempt. It returns the OAuth2 token it sent (for the
// 401 handling) and a transport, auth or context error.
func (c *Client) attempt(ctx context.Context, method, u string, r Request, notBefore time.Time, rejected *oauth2.Token) (*Response, *oauth2.Token, error) {
	if err := c.wait(ctx, notBefore); err != nil {
		return nil, nil, err
	}
	var tok *oauth2.Token
	if c.tokens != nil {
		var err error
		if rejected != nil {
			tok, err = c.tokens.refreshAfter401(ctx, rejected)
		} else {
			tok, err = c.tokens.token(ctx)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	defer func() { <-c.sem }()

	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(actx, method, u, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrInvalidRequest, c.scrub.scrub(unwrapURLError(err).Error()))
	}
	c.setHeaders(req, r, tok)
	hr, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, unwrapURLError(err)
	}
	defer hr.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hr.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("reading response body (status %d): %w", hr.StatusCode, err)
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return nil, nil, fmt.Errorf("response body larger than %d bytes", c.cfg.MaxResponseBytes)
	}
	return &Response{
		Status: hr.StatusCode,
		Header: hr.Header,
		Body:   data,
		URL:    hr.Request.URL.String(),
		Method: method,
		scrub:  c.scrub,
	}, tok, nil
}

func (c *Client) setHeaders(req *http.Request, r Request, tok *oauth2.Token) {
	h := req.Header
	h.Set("User-Agent", c.cfg.UserAgent)
	for k, v := range c.cfg.Headers {
		h.Set(k, v)
	}
	for k, v := range r.Headers {
		if v == "" {
			h.Del(k)
			continue
		}
		h.Set(k, v)
	}
	if r.Body != nil {
		switch {
		case r.ContentType != "":
			h.Set("Content-Type", r.ContentType)
		case h.Get("Content-Type") == "":
			h.Set("Content-Type", "application/json")
		}
	}
	switch c.cfg.Auth.Kind {
	case AuthBasic:
		req.SetBasicAuth(c.cfg.Auth.Username, c.cfg.Auth.Password)
	case AuthBearer:
		h.Set("Authorization", "Bearer "+c.cfg.Auth.Token)
	case AuthOAuth2ClientCredentials, AuthOAuth2RefreshToken:
		if tok != nil {
			typ := tok.Type() // "Bearer" unless the server says otherwise
			h.Set("Authorization", typ+" "+tok.AccessToken)
		}
	}
}

// CloseIdleConnections closes idle keep-alive connections; call it when
// the system is replaced.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Config returns the client's configuration with defaults filled in.
// It holds secrets: do not log it.
func (c *Client) Config() Config {
	cfg := c.cfg
	cfg.Headers = maps.Clone(cfg.Headers)
	cfg.RetryStrategy = slices.Clone(cfg.RetryStrategy)
	cfg.Auth.OAuth2.Scopes = slices.Clone(cfg.Auth.OAuth2.Scopes)
	cfg.Auth.OAuth2.EndpointParams = maps.Clone(cfg.Auth.OAuth2.EndpointParams)
	return cfg
}
