package sinks

import (
	"context"

	"github.com/ferrydata/ferry/engine"
)

// Register adds the sinks of this package to r.
func Register(r *engine.Registry) {
	r.RegisterSink("dataset", engine.Spec{Summary: "Writes entities as versions of a dataset in the store.", Schema: datasetSchema, Status: "stable"}, newDataset)
	r.RegisterSink("null", engine.Spec{Summary: "Discards entities.", Schema: `{"type":"object","properties":{"type":{"const":"null"},"comment":{}}}`, Status: "stable"}, newNull)
	for _, name := range []string{"json", "sql", "csv_endpoint", "http_endpoint", "conditional", "elasticsearch", "solr", "mail", "sms", "xml_endpoint", "splunk", "influxdb", "neo4j", "databrowser"} {
		r.RegisterUnsupported(engine.KindSink, name, "recognised Sesam sink type, not implemented yet")
	}
}

type nullSink struct{}

func newNull(*engine.Build, map[string]any) (engine.Sink, error) { return nullSink{}, nil }

func (nullSink) OutputDataset() string { return "" }

// Write discards the batch.
func (nullSink) Write(context.Context, []engine.Entity) error { return nil }
