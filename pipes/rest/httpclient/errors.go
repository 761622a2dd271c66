package httpclient

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrInvalidRequest is wrapped by errors about a Request that cannot be
// sent (bad URL, bad method).
var ErrInvalidRequest = errors.New("invalid request")

// TransportError means no HTTP response was obtained: connection refused,
// DNS, TLS verification, timeout, a body too large or cut short. Its
// message is redacted; Unwrap gives the cause (without the URL that
// net/http would put in it).
type TransportError struct {
	// System is the system's _id.
	System string
	// Method and URL (redacted) of the request.
	Method, URL string
	// Attempts is the number of attempts made.
	Attempts int
	// Err is the cause.
	Err error

	msg string // scrubbed Err.Error()
}

// Error implements error.
func (e *TransportError) Error() string {
	var b strings.Builder
	if e.System != "" {
		b.WriteString("system " + e.System + ": ")
	}
	fmt.Fprintf(&b, "%s %s", e.Method, e.URL)
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (%d attempts)", e.Attempts)
	}
	b.WriteString(": " + e.msg)
	return b.String()
}

// Unwrap returns the cause.
func (e *TransportError) Unwrap() error { return e.Err }

// AuthError means an OAuth2 token could not be obtained: the token endpoint
// refused the client or the refresh token (expired, revoked), or could not
// be reached.
type AuthError struct {
	// System is the system's _id.
	System string
	// Op is "fetching token" (client credentials) or "refreshing token".
	Op string
	// Err is the cause, typically an *oauth2.RetrieveError.
	Err error

	msg string
}

// Error implements error: "oauth2: refreshing token for system S: ...".
func (e *AuthError) Error() string {
	return fmt.Sprintf("oauth2: %s for system %s: %s", e.Op, e.System, e.msg)
}

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// StatusError is a response whose status the caller does not accept; see
// [Response.Err].
type StatusError struct {
	// Method and URL (redacted) of the request.
	Method, URL string
	// Status is the HTTP status code.
	Status int
	// Body is the start of the response body (at most
	// StatusErrorBodyLimit bytes, redacted).
	Body string
}

// StatusErrorBodyLimit is how much of a response body a StatusError keeps.
const StatusErrorBodyLimit = 300

// Error implements error: "GET https://x/y: status 404 Not Found: {...}".
func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: status %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Err returns nil when allowed accepts the response's status, else a
// *StatusError. A nil allowed accepts 2xx only.
func (r *Response) Err(allowed func(status int) bool) error {
	ok := r.Status >= 200 && r.Status <= 299
	if allowed != nil {
		ok = allowed(r.Status)
	}
	if ok {
		return nil
	}
	scrub := func(s string) string { return s }
	redactURL := RedactURL
	if r.scrub != nil {
		scrub, redactURL = r.scrub.scrub, r.scrub.url
	}
	// Scrub before cutting, over a window longer than the snippet: a
	// secret the cut would split is then replaced whole, not half shown.
	window := r.Body
	if len(window) > statusErrorScrubWindow {
		window = window[:statusErrorScrubWindow]
	}
	body := scrub(strings.ToValidUTF8(string(window), "\uFFFD"))
	return &StatusError{
		Method: r.Method,
		URL:    redactURL(r.URL),
		Status: r.Status,
		Body:   snippet([]byte(body), StatusErrorBodyLimit),
	}
}

// statusErrorScrubWindow is how much of an error body is scrubbed before
// it is cut to StatusErrorBodyLimit: secrets up to 3.7 KB long that start
// within the snippet are replaced whole.
const statusErrorScrubWindow = 4 << 10

// snippet returns at most n bytes of b as text, cut at a rune boundary,
// with "..." when cut.
func snippet(b []byte, n int) string {
	if len(b) <= n {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strings.ToValidUTF8(string(b[:cut]), "\uFFFD") + "..."
}

// unwrapURLError drops net/http's *url.Error wrapper, whose message repeats
// the unredacted URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
