package httpclient

import (
	"context"
	"errors"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// tokenCache holds one system's current OAuth2 token and renews it through
// golang.org/x/oauth2. It plays the role of oauth2.ReuseTokenSource with
// three additions the REST system needs: a configurable refresh window, a
// forced refresh after a 401 that happens once however many requests saw
// the 401 (single flight keyed on the rejected token), and waits that honour
// the caller's context.
type tokenCache struct {
	system string
	kind   AuthKind
	cc     *clientcredentials.Config
	conf   *oauth2.Config
	hc     *http.Client // for the token endpoint; same TLS settings
	window time.Duration
	now    func() time.Time
	scrub  *scrubber

	lock chan struct{} // 1-slot: held while reading or renewing tok
	tok  *oauth2.Token
}

func newTokenCache(cfg Config, hc *http.Client, now func() time.Time, scrub *scrubber) *tokenCache {
	o := cfg.Auth.OAuth2
	tc := &tokenCache{
		system: cfg.SystemID,
		kind:   cfg.Auth.Kind,
		hc:     hc,
		window: o.RefreshWindow,
		now:    now,
		scrub:  scrub,
		lock:   make(chan struct{}, 1),
	}
	if o.AccessToken != "" || o.RefreshToken != "" {
		tc.tok = &oauth2.Token{AccessToken: o.AccessToken, RefreshToken: o.RefreshToken, TokenType: "Bearer"}
	}
	switch cfg.Auth.Kind {
	case AuthOAuth2ClientCredentials:
		params := make(map[string][]string, len(o.EndpointParams))
		for k, v := range o.EndpointParams {
			params[k] = []string{v}
		}
		tc.cc = &clientcredentials.Config{
			ClientID:       o.ClientID,
			ClientSecret:   o.ClientSecret,
			TokenURL:       o.TokenURL,
			Scopes:         o.Scopes,
			EndpointParams: params,
		}
	case AuthOAuth2RefreshToken:
		tc.conf = &oauth2.Config{
			ClientID:     o.ClientID,
			ClientSecret: o.ClientSecret,
			Endpoint:     oauth2.Endpoint{TokenURL: o.TokenURL},
			Scopes:       o.Scopes,
		}
	}
	return tc
}

func (tc *tokenCache) acquire(ctx context.Context) error {
	select {
	case tc.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (tc *tokenCache) release() { <-tc.lock }

// fresh reports whether t can be sent now: it has an access token and does
// not expire within the refresh window (a zero expiry never expires).
func (tc *tokenCache) fresh(t *oauth2.Token) bool {
	if t == nil || t.AccessToken == "" {
		return false
	}
	return t.Expiry.IsZero() || tc.now().Add(tc.window).Before(t.Expiry)
}

// token returns a token to send, renewing it if needed.
func (tc *tokenCache) token(ctx context.Context) (*oauth2.Token, error) {
	if err := tc.acquire(ctx); err != nil {
		return nil, err
	}
	defer tc.release()
	if tc.fresh(tc.tok) {
		return tc.tok, nil
	}
	return tc.renewLocked(ctx)
}

// refreshAfter401 renews the token unless another request already replaced
// the rejected one, and returns the token to retry with.
func (tc *tokenCache) refreshAfter401(ctx context.Context, rejected *oauth2.Token) (*oauth2.Token, error) {
	if err := tc.acquire(ctx); err != nil {
		return nil, err
	}
	defer tc.release()
	if tc.tok != rejected && tc.fresh(tc.tok) {
		return tc.tok, nil
	}
	return tc.renewLocked(ctx)
}

func (tc *tokenCache) renewLocked(ctx context.Context) (*oauth2.Token, error) {
	ctx = context.WithValue(ctx, oauth2.HTTPClient, tc.hc)
	var (
		t   *oauth2.Token
		err error
		op  string
	)
	switch tc.kind {
	case AuthOAuth2ClientCredentials:
		op = "fetching token"
		t, err = tc.cc.Token(ctx)
	default:
		op = "refreshing token"
		rt := ""
		if tc.tok != nil {
			rt = tc.tok.RefreshToken
		}
		if rt == "" {
			err = errors.New("no refresh token")
			break
		}
		// A fresh tokenRefresher each time: the refresh token may have
		// been rotated by the previous renewal.
		t, err = tc.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
		if err == nil && t.RefreshToken == "" {
			t.RefreshToken = rt
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		err = unwrapURLError(err)
		return nil, &AuthError{System: tc.system, Op: op, Err: err, msg: tc.scrub.scrub(err.Error())}
	}
	if t.AccessToken == "" {
		err := errors.New("token endpoint returned no access_token")
		return nil, &AuthError{System: tc.system, Op: op, Err: err, msg: err.Error()}
	}
	tc.scrub.add(t.AccessToken, t.RefreshToken)
	tc.tok = t
	return t, nil
}
