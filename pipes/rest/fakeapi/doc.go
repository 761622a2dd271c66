// Package fakeapi is a realistic fake REST API for testing and demonstrating
// Ferry's system:rest: JSON record collections with paging, since filtering,
// ETags and optimistic locking, an OAuth2 token endpoint, basic or API-key
// auth, and fault injection (429, 5xx, slow and non-JSON responses, a page
// that repeats forever). It owns nothing of Ferry itself.
//
// Use it in tests as httptest.NewServer(fakeapi.New(opts).Handler()), or
// run it with [API.ListenAndServe]. All state is in memory; the Go methods
// ([API.Put], [API.Delete], [API.Touch], [API.SetFaults], ...) change it
// while it serves.
//
// # Records
//
// Every record is a JSON object with server-managed fields:
//
//	id           integer, unique per collection, > 0
//	version      integer, 1 on create, +1 on every change
//	lastChanged  timestamp "2006-01-02T15:04:05.000Z" (UTC, ms) of the last change
//	updated_at   the same value as lastChanged
//	deleted      true on tombstones only (see include_deleted)
//
// The ETag of a record is "<id>.<version>" (quoted). Every change gets a
// lastChanged strictly after every other record's in the collection
// (max(now, newest + 1 ms)). Seed records i = 1..N have lastChanged =
// BaseTime + i minutes, deterministic content for a given SeedValue, an
// "externalRef" that is an odd integer above 2^53 (not representable as a
// float64), and per collection:
//
//	customers  name, firstName, lastName, email, phone, address{street,zip,city,country},
//	           active, tags[], balance (decimal number, e.g. 1234.50), creditLimit (decimal
//	           string, e.g. "25000.00"), score, createdAt
//	products   sku, name, category, price (decimal), currency, stock, weightKg (3 decimals),
//	           dimensions{widthCm,heightCm,depthCm}, gtin, active, createdAt
//	invoices   invoiceNumber, customerId, issueDate, dueDate, currency, status,
//	           lines[{line,productId,quantity,unitPrice,amount}], total (exact sum), vatRate
//	(other)    name, value, amount (decimal), flag
//
// # Endpoints
//
//	GET    /api/                    {"collections": [names]}
//	GET    /api/{collection}        list (below); 404 for an unknown collection
//	POST   /api/{collection}        create; body: JSON object. An "id" in the body is used
//	                                if free (409 if taken), else the next id is generated.
//	                                201 with the record, ETag and Location. Creates the
//	                                collection if needed. With an Idempotency-Key header
//	                                already used in the collection nothing is created: the
//	                                answer is the record that key created (201, with
//	                                Idempotent-Replayed: true).
//	GET    /api/{collection}/{id}   200 with the record and ETag; 304 on a matching
//	                                If-None-Match; 404 if absent or deleted
//	PUT    /api/{collection}/{id}   replace (server fields ignored, a body id must match);
//	                                404 if absent; If-Match: 412 unless it lists the current
//	                                ETag ("*" matches any existing record); 200 with record
//	PATCH  /api/{collection}/{id}   JSON merge patch (RFC 7386, null removes a key); same
//	                                If-Match rules; 200 with the record
//	DELETE /api/{collection}/{id}   204; 404 if absent; same If-Match rules; leaves a
//	                                tombstone {id, version, lastChanged, updated_at, deleted}
//	POST   /oauth/token             OAuth2 token endpoint (below); also any POST whose path
//	                                ends in /oauth/token in any letter case, such as
//	                                /api/OAuth/Token (connectors build the token URL from
//	                                their base URL, e.g. powerofficego's {base_url}/OAuth/Token)
//	GET    /_admin/stats            [Stats] as JSON
//	GET    /_admin/faults           current [Faults] (delay as a Go duration string)
//	PUT    /_admin/faults           replace [Faults]: {"rate_limit_every": 3, "delay": "200ms", ...}
//
// POST and PUT answer 422 {"error": "validation_failed", "fields": [...]}
// when Options.Required fields are missing. Errors are JSON
// {"error": code, "message": text, "status": n}.
//
// # List query parameters
//
//	since=T          only records with lastChanged >= T (RFC 3339, "2006-01-02T15:04:05",
//	                 "2006-01-02" or Unix seconds; also read from a "Since" header)
//	$filter=F        OData lower bound on the change time, as PowerOffice Go takes it:
//	                 "(LastChanged ge datetimeoffset'T')" (outer parentheses optional,
//	                 field lastChanged or updated_at in any case, ge or gt, datetime'T'
//	                 or 'T' also accepted; T as for since). With since as well the later
//	                 bound applies. Any other filter is 400: fakeapi is no OData server.
//	                 $orderby is ignored (the order is always that of order=).
//	limit=M          page size; aliases top, $top, per_page, page_size, pageSize
//	                 (default Options.DefaultLimit 100, capped at MaxLimit 10000)
//	page=N           page paging: pages numbered from 1 (page=0 is also the first page)
//	                 or from 0 with Options.ZeroBasedPages. Without page, an X-Sesam-Page
//	                 or X-Page request header gives the page number.
//	offset=K         offset paging; aliases skip, $skip (the next link keeps the alias used)
//	after=C          cursor paging (alias cursor): C is the opaque value of the previous
//	                 page's paging.next.after; "after=" or paging=cursor starts at the top
//	paging=P         page | offset | cursor: the style of the next link when the request
//	                 does not pick one by its parameters (default Options.Paging = page)
//	order=O          updated (default: lastChanged, then id) | id
//	include_deleted  true: include tombstones (deletion feeds with since)
//	filter[F]=V      only records whose field F equals V (compared as text: strings as
//	                 they are, numbers as written); several filters must all hold. The
//	                 share side finds records this way (operation_lookup_insert).
//	envelope=E       data (default) | array | odata
//	always_next      true: give a next link after the last page too (the client must
//	                 stop on an empty page); default Options.AlwaysNext
//	repeat           true: the next link is the request's own URL, so the same page
//	                 repeats forever (termination guards); default Options.RepeatForever
//
// Response bodies by envelope (nextPageUrl is null and the Link header
// absent on the last page, unless always_next or repeat):
//
//	data:  {"data": [...], "total": T, "limit": M, "page": N, "nextPageUrl": "http://.../api/c?page=N+1&..."}
//	       offset paging has "offset": K instead of "page"; cursor paging has
//	       "paging": {"next": {"after": "C", "link": "http://..."}} ({} on the last page)
//	array: [...]
//	odata: {"@odata.count": T, "@odata.nextLink": "http://...", "value": [...]}
//
// Every list response has headers X-Total-Count: T and, when there is a next
// page, Link: <next>; rel="next" (RFC 5988). Next links are absolute
// (Options.BaseURL, else http://<Host>) and repeat the request's other query
// parameters. T counts the records matching since, before paging.
//
// # Authentication
//
// Options.Auth selects the check on /api (never on /oauth or /_admin):
// bearer (tokens from /oauth/token or [API.IssueToken], 401 with
// WWW-Authenticate: Bearer error="invalid_token" when missing, unknown or
// expired), basic (Options.Username/Password), apikey (header
// Options.APIKeyHeader, default X-API-Key).
//
// POST /oauth/token takes a form body. The client authenticates with HTTP
// basic (id and secret form-encoded, RFC 6749 §2.3.1) or with client_id and
// client_secret form fields (defaults "ferry-client" / "ferry-secret"); a
// bad client gets 401 {"error": "invalid_client"}. grant_type
// client_credentials returns {"access_token", "token_type": "Bearer",
// "expires_in", "scope"?}; grant_type refresh_token with a valid
// refresh_token returns the same (plus a new refresh_token that replaces the
// used one when Options.RotateRefreshTokens); an unknown, revoked or expired
// refresh token gets 400 {"error": "invalid_grant"}; other grants 400
// unsupported_grant_type. Access tokens live Options.TokenLifetime (1 h).
//
// # Faults
//
// [Faults] apply to /api requests, counted from 1, before authentication:
// a delay, then 429 (with Retry-After, default "1"), then an error status
// (default 503), then a 200 text/html page. "Every N" and "next K" forms
// exist for each; Faults.Methods limits them to some methods (fail the
// writes, let the lookups through). Write-then-fail faults apply a write
// and then lose its answer (an error status, or the connection closed
// without one), as a timeout or a crashed proxy would: the client cannot
// tell whether the write happened. See [Faults].
//
// # Editing records out of band
//
// [API.Put], [API.Patch] and [API.Delete] change records as a user of the
// system would, while the API serves: tests use them to edit a record
// after it was collected (optimistic locking must then refuse to overwrite
// it).
package fakeapi
