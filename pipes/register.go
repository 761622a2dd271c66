package pipes

import "github.com/ferrydata/ferry/engine"

// Register adds this package's sources, transforms and systems to r, and
// records the Sesam types Ferry recognises but does not run yet.
func Register(r *engine.Registry) {
	r.RegisterSource("embedded", engine.Spec{Summary: "A static list of entities in the config.", Schema: embeddedSchema, Status: "stable"}, newEmbedded)
	r.RegisterSource("dataset", engine.Spec{Summary: "Reads a dataset incrementally from the pipe's offset.", Schema: datasetSourceSchema, Status: "stable"}, newDatasetSource)
	r.RegisterSource("json", engine.Spec{Summary: "Reads a JSON array, NDJSON or concatenated values from a file or an HTTP(S) URL.", Schema: jsonSourceSchema, Status: "stable"}, newJSONSource)
	r.RegisterTransform("jq", engine.Spec{Summary: "Runs a jq program (gojq) on each entity; 0..n outputs.", Schema: jqSchema, Status: "stable"}, newJQ)
	r.RegisterTransform("json_schema", engine.Spec{Summary: "Validates each entity against a JSON Schema and records valid/errors in it.", Schema: jsonSchemaTransformSchema, Status: "stable"}, newJSONSchemaTransform)
	r.RegisterSystem("url", engine.Spec{Summary: "An HTTP(S) base URL with headers and credentials.", Schema: urlSystemSchema, Status: "stable"}, newURLSystem)
	for _, name := range []string{"csv", "sql", "conditional", "ldap", "sdshare", "elasticsearch", "mongodb", "rest", "merge_datasets", "union_datasets", "diff_datasets", "http_endpoint"} {
		r.RegisterUnsupported(engine.KindSource, name, "recognised Sesam source type, not implemented yet")
	}
	for _, name := range []string{"http", "conditional", "template", "emit_children", "rest", "dtl"} {
		r.RegisterUnsupported(engine.KindTransform, name, "recognised Sesam transform type, not implemented yet")
	}
	for _, name := range []string{"rest", "sql", "ldap", "microsoft_sql_server", "postgresql", "mysql", "oracle", "smtp", "elasticsearch", "solr", "twilio", "mongodb", "kafka", "microservice"} {
		r.RegisterUnsupported(engine.KindSystem, name, "recognised Sesam system type, not implemented yet")
	}
}
