// Package httpapi serves Ferry over HTTP for `ferry serve`: the JSON API
// over an engine (pipes with their state and run logs, datasets and their
// entities, pipe actions), health and readiness probes, Prometheus
// metrics, and the web dataset browser. It only reads and triggers; it
// never writes entities itself (webhook receivers, mounted by the caller
// with HandlePublic, write through the engine).
//
// Security is on by default (see API.ServeHTTP): every route but /healthz,
// /ready, the login page and the webhook receivers needs the API token
// (ResolveToken: FERRY_API_TOKEN or a token generated into the data
// directory), the Host header must name the server (DNS rebinding), state-
// changing requests must be same-origin and JSON (cross-site forms), and
// request bodies are bounded per request and all together. Responses other
// than entity data are redacted with the plan's Redactor.
//
// Endpoints (all JSON unless noted):
//
//	GET  /api/pipes                          pipes with state and last run
//	GET  /api/pipes/{id}                     one pipe
//	GET  /api/pipes/{id}/runs?limit=N        run log, newest first
//	POST /api/pipes/{id}/run                 run now and wait; returns the run record
//	POST /api/pipes/{id}/reset               clear the pipe's offset
//	POST /api/pipes/{id}/rescan              make the next run a full run (offset kept until it completes)
//	GET  /api/datasets                       datasets with counts
//	GET  /api/datasets/{name}                one dataset
//	GET  /api/datasets/{name}/entities?since=N&limit=N[&history=true][&format=ndjson]
//	GET  /api/datasets/{name}/entities/{id}[?history=true]
//	GET  /healthz                            the process is up (public)
//	GET  /ready                              store, plan and scheduler are ready (public; 503 if not)
//	GET  /metrics                            Prometheus text format
//	GET  /                                   the web dataset browser (HTML; Options.UI)
package httpapi
