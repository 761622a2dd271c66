package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferrydata/ferry/templates"
)

// Profile is the env profile WriteExpanded writes ("<profile>-env.json").
const Profile = "test"

// nodeMetadata is the node-metadata.conf.json sesam-py writes.
func nodeMetadata() map[string]any {
	return map[string]any{
		"_id":          "node",
		"type":         "metadata",
		"task_manager": map[string]any{"disable_user_pipes": true},
	}
}

// WriteExpanded writes the expansion the way sesam-py's expand_connector
// does: pipes/<_id>.conf.json for every "pipe", systems/<_id>.conf.json for
// every "system:*" (duplicate ids: the last one wins; other types are
// skipped), node-metadata.conf.json and test-env.json (copied from the
// connector's own test-env.json when it has one, else "node-env": "test"
// plus every additional parameter as ""). With use_webhook_secret,
// http_endpoint pipes whose _id ends in "event" get
// permissions [["allow", ["group:Anonymous"], ["write_data"]]] (with a
// warning when they had permissions already).
//
// Files are written like Python's json.dump(indent=2, sort_keys=True):
// keys sorted, two-space indent, non-ASCII escaped, no trailing newline, so
// the output is byte-for-byte comparable with sesam-py's (numbers keep
// their exact text). Unlike sesam-py, which deletes the whole output
// directory first, only the pipes/ and systems/ sub-directories are
// replaced; an _id that is not a plain file name is an error.
func WriteExpanded(dir string, m *Manifest, comps []Component) error {
	for _, sub := range []string{"pipes", "systems"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return fmt.Errorf("write expanded connector: clear %s: %w", sub, err)
		}
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("write expanded connector: %w", err)
		}
	}
	if err := writePyJSON(filepath.Join(dir, "node-metadata.conf.json"), nodeMetadata()); err != nil {
		return err
	}
	env, err := profileEnv(m)
	if err != nil {
		return err
	}
	if err := writePyJSON(filepath.Join(dir, Profile+"-env.json"), env); err != nil {
		return err
	}
	for i := range comps {
		c := &comps[i]
		obj := c.obj
		if obj == nil {
			doc, err := decodeOrdered(c.JSON)
			if err != nil {
				return fmt.Errorf("write expanded connector: component %d (%s): %w", i, c.ID, err)
			}
			o, ok := doc.(Object)
			if !ok {
				return fmt.Errorf("write expanded connector: component %d (%s) is not a JSON object", i, c.ID)
			}
			obj = o
		}
		typ := obj.GetString("type")
		var sub string
		switch {
		case typ == "pipe":
			sub = "pipes"
		case strings.HasPrefix(typ, "system:"):
			sub = "systems"
		default:
			continue
		}
		id := obj.GetString("_id")
		if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`) || !filepath.IsLocal(id) {
			return fmt.Errorf("write expanded connector: component %d from %s has an _id %q that is not usable as a file name", i, c.Template, id)
		}
		if sub == "pipes" && m != nil && m.UseWebhookSecret {
			_, had := obj.Get("permissions")
			cp := append(Object{}, obj...)
			if addWebhookPermissions(&cp) {
				if had {
					slog.Warn("permissions already set on webhook endpoint pipe; overwriting", "pipe", id, "permissions", webhookPermissions())
				}
				obj = cp
			}
		}
		if err := writePyJSON(filepath.Join(dir, sub, id+".conf.json"), plain(obj)); err != nil {
			return err
		}
	}
	return nil
}

func profileEnv(m *Manifest) (any, error) {
	if m == nil {
		return map[string]any{"node-env": "test"}, nil
	}
	file := filepath.Join(m.Dir, Profile+"-env.json")
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		return v, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	env := map[string]any{"node-env": "test"}
	for _, k := range m.AdditionalParameters {
		env[k] = ""
	}
	return env, nil
}

func writePyJSON(file string, v any) error {
	b, err := templates.PythonJSON(v, 2)
	if err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return fmt.Errorf("write expanded connector: %w", err)
	}
	return nil
}
