package pipes

import (
	"github.com/ferrydata/ferry/engine"
)

const templateTransformSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "template transform",
  "type": "object",
  "required": ["template"],
  "properties": {
    "type": {"const": "template"},
    "comment": {},
    "template": {"description": "The built-in template's name (see Built-in templates).", "type": ["string", "object"]},
    "properties": {"description": "The template's options.", "type": "object"}
  }
}`

// Built-in Sesam transform templates, by name.
const (
	TemplateCollectRest  = "transform-collect-rest"
	TemplateShareRest    = "transform-share-rest"
	TemplateDefaultsRest = "transform-defaults-rest"
)

// collectRestSchema validates transform-collect-rest's properties.
const collectRestSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "transform-collect-rest properties",
  "type": "object",
  "required": ["primary_key", "share_dataset"],
  "properties": {
    "primary_key": {"description": "The record's key in the system: a property name, a \"_S.\" DTL path, or a list for a composite key.", "type": ["string", "array"], "items": {"type": "string"}},
    "share_dataset": {"description": "The share pipe's dataset: a record whose key equals a share record's $generated_id gets that record's $origin.", "type": "string", "minLength": 1},
    "rest_system": {"description": "The system for operation_lookup and operation_lookup_delete.", "type": "string", "minLength": 1},
    "operation_lookup": {"description": "An operation that fetches each collected record.", "type": "string", "minLength": 1},
    "operation_lookup_properties": {"description": "Properties for operation_lookup.", "type": "object"},
    "operation_lookup_delete": {"description": "An operation that checks a deleted record: found (200) un-deletes it.", "type": "string", "minLength": 1},
    "operation_lookup_delete_properties": {"description": "Properties for operation_lookup_delete.", "type": "object"},
    "original_property": {"description": "Keep the record as collected under this property.", "type": "string", "minLength": 1}
  }
}`

// newTemplateTransform builds "template" transforms:
// {"type": "template", "template": "<name>", "properties": {...}}. Sesam
// expands a named, unpublished template into a chain of transforms; Ferry
// implements each template in Go and registers it with
// engine.Registry.RegisterTemplate (transform-collect-rest here,
// transform-share-rest and transform-defaults-rest in pipes/rest). Inline
// template bodies (an object) are not supported.
func newTemplateTransform(b *engine.Build, cfg map[string]any) (engine.Transform, error) {
	name, ok := cfg["template"].(string)
	if !ok {
		return nil, engine.Fieldf("/template", "%v: inline template bodies (give a built-in template name)", engine.ErrUnsupported)
	}
	props, _ := cfg["properties"].(map[string]any)
	if b.Registry == nil {
		return nil, engine.Fieldf("/template", "no registry to build template %q", name)
	}
	return b.Registry.BuildTemplate(b, name, props)
}

// propString reads a string property of a template.
func propString(props map[string]any, key string) (string, error) {
	v, ok := props[key]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", engine.Fieldf("/properties/"+key, "must be a string, not %s", engine.TypeName(v))
	}
	return s, nil
}

// propObject reads an object property of a template.
func propObject(props map[string]any, key string) (map[string]any, error) {
	v, ok := props[key]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, engine.Fieldf("/properties/"+key, "must be an object, not %s", engine.TypeName(v))
	}
	return m, nil
}
