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
    "template": {"type": ["string", "object"]},
    "properties": {"type": "object"}
  }
}`

// Built-in Sesam transform templates, by name.
const (
	TemplateCollectRest  = "transform-collect-rest"
	TemplateShareRest    = "transform-share-rest"
	TemplateDefaultsRest = "transform-defaults-rest"
)

// TemplateSupported reports whether Ferry runs the built-in transform
// template name, so `ferry compat` can count "template:<name>". Only
// transform-collect-rest is implemented so far; transform-share-rest and
// transform-defaults-rest are recognised and fail to compile with "not
// supported yet".
func TemplateSupported(name string) bool {
	return name == TemplateCollectRest
}

// newTemplateTransform returns the constructor of "template" transforms:
// {"type": "template", "template": "<name>", "properties": {...}}. Sesam
// expands a named, unpublished template into a chain of transforms; Ferry
// implements each supported template in Go (see [CollectRest]). Inline
// template bodies (an object) are not supported.
func newTemplateTransform(lookups *Lookups) engine.TransformFunc {
	return func(b *engine.Build, cfg map[string]any) (engine.Transform, error) {
		name, ok := cfg["template"].(string)
		if !ok {
			return nil, engine.Fieldf("/template", "%v: inline template bodies (give a built-in template name)", engine.ErrUnsupported)
		}
		props, _ := cfg["properties"].(map[string]any)
		switch name {
		case TemplateCollectRest:
			return newCollectRest(b, props, lookups)
		case TemplateShareRest, TemplateDefaultsRest:
			return nil, engine.Fieldf("/template", "%v: template %q", engine.ErrUnsupported, name)
		}
		return nil, engine.Fieldf("/template", "unknown transform template %q (known: %s, %s, %s)", name, TemplateCollectRest, TemplateShareRest, TemplateDefaultsRest)
	}
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
