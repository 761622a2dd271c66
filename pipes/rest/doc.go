// Package rest is Ferry's system:rest with the REST source and the REST
// transform: Ferry collecting from, and enriching through, REST APIs the
// way the public Sesam connectors expect (SPEC c, d "REST source", f
// "rest").
//
// A [System] owns one HTTP client (package httpclient: auth, retries, rate
// limits, redaction) and its named operations, whose Jinja strings
// (package templates/jinja) are compiled once when the config is built.
// The [Source] and the [Transform] pick an operation (pipe "operations"
// first, then the system's) and override its properties, payload,
// payload_property, id_expression and updated_expression.
//
// # Requests and paging
//
// A request is rendered in this order: url (first page) or the next link,
// then headers, then params, then payload. Ferry renders headers before
// params, unlike SPEC d step 2, because the corpus computes params from the
// request headers (powerofficego and superoffice: `$skip` from
// `headers['X-Sesam-Page']`). Templates see properties, since (None without
// a token), url (the absolute URL), page (0-based), is_first_page,
// page_size (when set), headers and request_headers (system + operation
// headers), request_params (in the payload), and from the second page
// previous_body, previous_params, previous_request_headers and
// previous_headers (response headers). A param whose name the URL's query
// already has is not added again: next links usually repeat the query.
//
// After a response, error_expression, next_page_link, id_expression and
// updated_expression see body, headers and response_headers (response
// headers under their canonical and lower-case names, Link parsed into
// rel -> URL so `headers.Link.next` works), request_headers,
// request_params and url (the final request URL). id_expression and
// updated_expression also see every field of the item as a top-level name;
// an item field wins over a page variable of the same name.
//
// Paging stops when any next_page_termination_strategy holds (default
// next-page-link-empty, same-next-page-request, same-response), when the
// operation has no next_page_link, or when the link renders empty. A repeated
// response (same-response) is not emitted twice. max_pages (default
// [DefaultMaxPages]) fails a run whose link never terminates.
//
// # Responses
//
// Bodies are parsed as JSON when their Content-Type is application/json,
// */*+json or listed in the operation's json_content_types (an absent
// Content-Type is sniffed). Ferry decision, unlike SPEC d step 5 (one entity
// with the raw body): the REST source fails on a 2xx body that is not JSON,
// because a maintenance page answered with 200 would otherwise become the
// whole collection and deletion tracking would delete everything else. The
// REST transform without payload_property keeps a non-JSON body as text.
// payload_property picks the items: the exact key first, else a dot path;
// a list is the items, an object one item, null none, and a missing key is
// an error. A non-2xx status fails the run with the method, the redacted
// URL, the status and the start of the body; 429 is retried by the client
// (rate_limiting_retries, Retry-After).
package rest
