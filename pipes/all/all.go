// Package all assembles the standard component registry: every source,
// transform, sink and system type that ships with Ferry. It is the one
// place that imports all component packages (as Caddy's modules/standard
// does), so the engine itself never does.
package all

import (
	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes"
	"github.com/ferrydata/ferry/pipes/rest"
	"github.com/ferrydata/ferry/sinks"
)

// Registry returns a new registry holding every standard component.
func Registry() *engine.Registry {
	r := engine.NewRegistry()
	pipes.Register(r)
	pipes.RegisterCollect(r)
	sinks.Register(r)
	rest.Register(r)
	return r
}
