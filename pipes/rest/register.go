package rest

import (
	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
)

// Options adjust the components Register builds. The zero value is what
// the ferry binary uses.
type Options struct {
	// HTTPOptions are passed to httpclient.New for every system:rest, after
	// the logger option: tests inject httpclient.WithSleep (429 and retry
	// delays without waiting) and httpclient.WithHTTPClient (a TLS test
	// server's client).
	HTTPOptions []httpclient.Option
}

// Register adds system "rest", source "rest", transform "rest", sink "rest"
// and the templates transform-share-rest and transform-defaults-rest to r.
func Register(r *engine.Registry) { RegisterWith(r, Options{}) }

// RegisterWith is Register with options.
func RegisterWith(r *engine.Registry, opts Options) {
	r.RegisterSystem("rest", engine.Spec{
		Summary: "A REST API: URL pattern, headers, auth (basic, OAuth2), retries, rate limits and named operations.",
		Schema:  systemSchema, Status: "stable",
	}, newSystemFunc(opts))
	r.RegisterSource("rest", engine.Spec{
		Summary: "Collects entities from a REST operation, page by page, with since support.",
		Schema:  sourceSchema, Status: "stable",
	}, newSource)
	r.RegisterTransform("rest", engine.Spec{
		Summary: "Sends a REST request per entity and keeps or emits the response.",
		Schema:  transformSchema, Status: "stable",
	}, newTransform)
	r.RegisterSink("rest", engine.Spec{
		Summary: "Sends a REST request per entity (at least once; idempotency keys optional).",
		Schema:  sinkSchema, Status: "beta",
	}, newSink)
	r.RegisterTemplate("transform-share-rest", engine.Spec{
		Summary: "Share side of the connector contract: insert, update or delete per entity with optimistic locking, origin tracking and crash-safe bookkeeping.",
		Schema:  shareSchema, Status: "beta",
	}, newShare)
	r.RegisterTemplate("transform-defaults-rest", engine.Spec{
		Summary: "Merges a system's defaults for new records under entities that will be inserted.",
		Schema:  defaultsSchema, Status: "beta",
	}, newDefaults)
}
