// Package httpclient is the HTTP layer of Ferry's system:rest: it owns the
// connection settings of one REST system (URL pattern, default headers, TLS,
// timeouts), its authentication (basic, static bearer, OAuth2 client
// credentials and refresh token), and the retry, rate-limit and concurrency
// policy applied to every request sent on the system's behalf.
//
// It sends requests that are already rendered: paging, Jinja rendering,
// payload shaping and entity extraction belong to the REST source, sink and
// transform built on top of it.
//
// # Contract of Do
//
// [Client.Do] returns the final *[Response] with a nil error for every HTTP
// status, including non-2xx statuses after the retry policy is exhausted;
// callers decide what is acceptable (allowed_status_codes and friends), for
// instance with [Response.Err]. Do returns an error only when no response
// could be obtained: transport failures (TLS, connection refused, timeout;
// [*TransportError]), OAuth2 token failures ([*AuthError]), an invalid
// request, or a cancelled context.
//
// # Retries
//
// The status of each response selects at most one [RetryRule], in this order:
//  1. the most specific retry_strategy key that contains the status
//     ("429" beats "400-499"; a narrower range beats a wider one);
//  2. for 429, the rate-limit rule rate_limiting_retries x rate_limiting_delay
//     (SPEC c; defaults 3 x 1 s, see [DefaultConfig]; Request.RateLimit
//     overrides it per request for pipe-level rate_limiting_* keys);
//  3. the retry_strategy "default" key, for statuses >= 400.
//
// Each rule has its own retry budget per call of Do. A Retry-After header
// (delta seconds or HTTP date) on a retried response replaces the rule's
// delay, capped at Config.MaxRetryAfter. A 429 also pauses the whole client
// (every request of the system waits) until the delay has passed, because the
// limit is the remote system's, not the request's. Transport errors are
// retried only under the "default" rule. Retries apply to every method: a
// retry_strategy that retries a non-idempotent POST may duplicate writes,
// which is the configuration's choice.
//
// With OAuth2, a 401 forces one token refresh and one retry of the request,
// outside the retry budgets.
//
// # Secrets
//
// Passwords, client secrets, tokens and sensitive header values never appear
// in errors or logs: URLs are redacted (userinfo and query parameters whose
// name looks like token/key/secret/password/signature/code), and every error
// message is additionally scrubbed of the literal secret values the client
// knows about.
//
// # Concurrency
//
// A Client is safe for concurrent use. At most Config.MaxConcurrency requests
// are in flight at once (worker_threads), and Config.RequestsPerSecond, when
// set, limits the rate at which attempts (retries included) start.
package httpclient
