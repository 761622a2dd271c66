package httpapi

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/ferrydata/ferry/engine"
)

// change is one difference between two versions of an entity.
type change struct {
	Path string // JSON pointer of the property ("/address/city")
	Op   string // added | removed | changed
	Old  string // JSON text before ("" when added)
	New  string // JSON text after ("" when removed)
}

// diffJSON compares two stored entity bodies property by property:
// objects are compared key by key, recursively; any other value (arrays
// included) is compared whole, as JSON text. Changes come sorted by path.
// A body that does not decode is compared whole.
func diffJSON(before, after []byte) []change {
	a, errA := engine.DecodeValue(before)
	b, errB := engine.DecodeValue(after)
	if errA != nil || errB != nil {
		if string(before) == string(after) {
			return nil
		}
		return []change{{Path: "", Op: "changed", Old: string(before), New: string(after)}}
	}
	var out []change
	diffValue("", a, b, &out)
	slices.SortFunc(out, func(x, y change) int { return strings.Compare(x.Path, y.Path) })
	return out
}

func diffValue(path string, a, b any, out *[]change) {
	ma, okA := a.(map[string]any)
	mb, okB := b.(map[string]any)
	if okA && okB {
		for k, va := range ma {
			p := path + "/" + escapePointer(k)
			if vb, ok := mb[k]; ok {
				diffValue(p, va, vb, out)
			} else {
				*out = append(*out, change{Path: p, Op: "removed", Old: jsonText(va)})
			}
		}
		for k, vb := range mb {
			if _, ok := ma[k]; !ok {
				*out = append(*out, change{Path: path + "/" + escapePointer(k), Op: "added", New: jsonText(vb)})
			}
		}
		return
	}
	if ta, tb := jsonText(a), jsonText(b); ta != tb {
		*out = append(*out, change{Path: path, Op: "changed", Old: ta, New: tb})
	}
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
