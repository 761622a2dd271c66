package fakeapi

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tokenStore holds issued tokens.
type tokenStore struct {
	mu      sync.Mutex
	seq     int64
	access  map[string]time.Time // token -> expiry
	refresh map[string]refreshToken
}

type refreshToken struct {
	expires time.Time // zero: never
	revoked bool
}

func (s *tokenStore) init() {
	s.access = make(map[string]time.Time)
	s.refresh = make(map[string]refreshToken)
}

func (s *tokenStore) newToken(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	s.seq++
	return prefix + strconv.FormatInt(s.seq, 10) + "-" + hex.EncodeToString(b[:])
}

func (s *tokenStore) validAccess(tok string, now time.Time) bool {
	if tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[tok]
	return ok && now.Before(exp)
}

// TokenPair is an access token with its refresh token.
type TokenPair struct {
	// AccessToken is valid until ExpiresAt.
	AccessToken string
	// RefreshToken renews it at /oauth/token.
	RefreshToken string
	// ExpiresAt is the access token's expiry.
	ExpiresAt time.Time
}

// issue creates an access token and, when withRefresh, a refresh token.
func (a *API) issue(withRefresh bool) TokenPair {
	now := a.now()
	s := &a.auth
	s.mu.Lock()
	defer s.mu.Unlock()
	p := TokenPair{AccessToken: s.newToken("at-"), ExpiresAt: now.Add(a.opts.TokenLifetime)}
	s.access[p.AccessToken] = p.ExpiresAt
	if withRefresh {
		p.RefreshToken = s.newToken("rt-")
		var exp time.Time
		if a.opts.RefreshTokenLifetime > 0 {
			exp = now.Add(a.opts.RefreshTokenLifetime)
		}
		s.refresh[p.RefreshToken] = refreshToken{expires: exp}
	}
	return p
}

// IssueToken issues an access and a refresh token directly, as an OAuth2
// authorization (consent) step would; tests seed the refresh-token flow
// with it. It does not count in Stats.TokensIssued.
func (a *API) IssueToken() TokenPair { return a.issue(true) }

// RevokeRefreshToken makes a refresh token invalid (invalid_grant).
func (a *API) RevokeRefreshToken(tok string) {
	a.auth.mu.Lock()
	defer a.auth.mu.Unlock()
	if rt, ok := a.auth.refresh[tok]; ok {
		rt.revoked = true
		a.auth.refresh[tok] = rt
	}
}

// ExpireAccessTokens invalidates every access token issued so far, so the
// next /api request with one of them gets 401.
func (a *API) ExpireAccessTokens() {
	a.auth.mu.Lock()
	defer a.auth.mu.Unlock()
	clear(a.auth.access)
}

// tokenError answers an RFC 6749 §5.2 error.
func (a *API) tokenError(w http.ResponseWriter, status int, code, desc string) {
	a.stats.tokenErrors.Add(1)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

// handleToken is the token endpoint: client_credentials and refresh_token
// grants, client authentication by basic header or form fields.
func (a *API) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		a.tokenError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		// RFC 6749 §2.3.1: form-encoded before base64.
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if s, err := url.QueryUnescape(secret); err == nil {
			secret = s
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if !equalSecret(id, a.opts.ClientID) || !equalSecret(secret, a.opts.ClientSecret) {
		a.tokenError(w, http.StatusUnauthorized, "invalid_client", "unknown client or bad secret")
		return
	}
	var pair TokenPair
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "client_credentials":
		pair = a.issue(false)
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		now := a.now()
		s := &a.auth
		s.mu.Lock()
		info, known := s.refresh[rt]
		valid := known && !info.revoked && (info.expires.IsZero() || now.Before(info.expires))
		if valid && a.opts.RotateRefreshTokens {
			info.revoked = true
			s.refresh[rt] = info
		}
		s.mu.Unlock()
		if !valid {
			a.tokenError(w, http.StatusBadRequest, "invalid_grant", "refresh token is invalid, expired or revoked")
			return
		}
		pair = a.issue(a.opts.RotateRefreshTokens)
	default:
		a.tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type "+strconv.Quote(gt)+" is not supported")
		return
	}
	a.stats.tokensIssued.Add(1)
	body := map[string]any{
		"access_token": pair.AccessToken,
		"token_type":   "Bearer",
		"expires_in":   int64(a.opts.TokenLifetime / time.Second),
	}
	if pair.RefreshToken != "" {
		body["refresh_token"] = pair.RefreshToken
	}
	if sc := strings.TrimSpace(r.PostForm.Get("scope")); sc != "" {
		body["scope"] = sc
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, body)
}
