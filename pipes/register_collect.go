package pipes

import "github.com/ferrydata/ferry/engine"

// RegisterCollect adds the components the connector collect side needs
// besides REST: the dtl, emit_children and template
// (transform-collect-rest) transforms and the merge, merge_datasets,
// union_datasets and http_endpoint sources. The dtl and template
// transforms of one registry share one [Lookups] index set, so pipes that
// hop into the same dataset and path share an index.
func RegisterCollect(r *engine.Registry) {
	lookups := NewLookups()
	r.RegisterTransform("dtl", engine.Spec{Summary: "Sesam DTL rules (default + named), compiled once; hops read other datasets through an incremental index.", Schema: dtlSchema, Status: "beta"}, newDTLTransform(lookups))
	r.RegisterTransform("emit_children", engine.Spec{Summary: "Emits the dicts in $children (each with an _id) and drops the parent.", Schema: emitChildrenSchema, Status: "stable"}, newEmitChildren)
	r.RegisterTransform("template", engine.Spec{Summary: "A built-in Sesam transform template (transform-collect-rest, transform-share-rest, transform-defaults-rest).", Schema: templateTransformSchema, Status: "beta"}, newTemplateTransform)
	r.RegisterTemplate(TemplateCollectRest, engine.Spec{Summary: "Collect side of the connector contract: lookups and the $origin hop into the share dataset.", Schema: collectRestSchema, Status: "beta"},
		func(b *engine.Build, props map[string]any) (engine.Transform, error) {
			return newCollectRest(b, props, lookups)
		})
	r.RegisterSource("merge", engine.Spec{Summary: "Merges the entities of several datasets that equality rules say are the same into one entity each, incrementally (Sesam's merge source, version 2).", Schema: mergeSchema, Status: "beta"}, newMerge)
	r.RegisterSource("merge_datasets", engine.Spec{Summary: "Several datasets as one stream, ids untouched; strategy latest (newest _ts wins) or all.", Schema: mergeDatasetsSchema, Status: "stable"}, newMergeDatasets)
	r.RegisterSource("union_datasets", engine.Spec{Summary: "Several datasets read in turn, ids prefixed with the dataset name by default.", Schema: unionDatasetsSchema, Status: "stable"}, newUnionDatasets)
	r.RegisterSource("http_endpoint", engine.Spec{Summary: "Entities POSTed to /api/receivers/{pipe}/entities of ferry serve; no pump.", Schema: endpointSchema, Status: "beta"}, newEndpointSource)
}
