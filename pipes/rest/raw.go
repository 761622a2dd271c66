package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/templates/jinja"
)

// The raw path of a rest source: a page's items go to the engine as JSON
// text (engine.RawReader) instead of maps. The page is walked, not
// decoded: the members of the body other than payload_property are
// decoded for the page's templates, the items are cut out of the text, and
// each item's _id (and _updated) is read from its text and written into
// it. The engine then makes the stored form straight from the text
// (engine.PrepareRaw), and on a re-run an unchanged item costs a hash and
// a lookup. The entities stored are byte for byte those of the map path
// (TestRawPageMatchesMaps and FuzzRawPage compare the two).
//
// A call takes the raw path only when nothing it renders could read the
// items through the page body: see rawEligible.

// rawEligible reports whether c's pages can be handed over as text: its
// payload_property is a plain key (or absent); id_expression and
// updated_expression, when set, print a name path (`{{ id }}`,
// `{{ a.b }}`); and no template of the operation can read the items
// through body or previous_body, which the raw path holds without them:
// a template may read those only through constant members other than
// payload_property (`{{ body.paging.next }}`, `{{ body['more'] }}`), and
// not at all when the items are the body.
func rawEligible(c *call) bool {
	prop := c.payloadProperty
	if strings.Contains(prop, ".") {
		return false
	}
	if c.idT != nil && c.idFast == nil || c.updT != nil && c.updFast == nil {
		return false
	}
	for _, t := range []*jinja.Template{c.urlT, c.errT, c.idT, c.updT, c.nextT} {
		if t != nil && readsItems(t, prop) {
			return false
		}
	}
	for _, tree := range []any{c.op.Headers, c.op.Params, c.payload} {
		if treeReadsItems(c.sys.Templates, tree, prop) {
			return false
		}
	}
	return true
}

// readsItems reports whether t could read a page's items through body or
// previous_body, when they are the body's member prop ("" for the body
// itself).
func readsItems(t *jinja.Template, prop string) bool {
	for _, name := range []string{"body", "previous_body"} {
		keys, whole := t.Members(name)
		if whole || t.Uses(name) && prop == "" || slices.Contains(keys, prop) {
			return true
		}
	}
	return false
}

// treeReadsItems is readsItems for every template in tree (a config value
// rendered with RenderTree: strings and map keys). A string that does not
// compile counts as reading them.
func treeReadsItems(ts *jinja.Set, tree any, prop string) bool {
	err := walkTree(tree, func(src string) error {
		if t, err := ts.Compile(src); err != nil || readsItems(t, prop) {
			return errReadsItems
		}
		return nil
	})
	return err != nil
}

var errReadsItems = errors.New("reads the items")

// parseRaw is parse for a listing page on the raw path: the body without
// the items (nil when the items are the body), and the text of each item.
// What the map path would refuse, it refuses with the same error.
func (p *pager) parseRaw(i int, resp *httpclient.Response) (body any, isJSON bool, items [][]byte, err error) {
	data := resp.Body
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(bytes.TrimSpace(data)) == 0 { // as parse decides
		// An empty body is null, which is no items only without a
		// payload_property.
		if _, err := extractItems(nil, p.c.payloadProperty); err != nil {
			return nil, true, nil, fmt.Errorf("%s page %d: %w", p.c.where, i, err)
		}
		return nil, true, nil, nil
	}
	ct := resp.Header.Get("Content-Type")
	if !isJSONType(ct, p.c.op.JSONContentTypes) {
		if ct != "" || !json.Valid(data) {
			return nil, false, nil, nil
		}
	}
	invalid := func(err error) error {
		return p.bodyError(i, resp, fmt.Sprintf("invalid JSON: %v", err))
	}
	prop := p.c.payloadProperty
	var list []byte // the items' text: an array, an object or null
	switch {
	case prop == "":
		list = t
	case t[0] == '{':
		m := map[string]any{}
		found := false
		err := engine.ScanRawObject(data, func(k, val []byte) error {
			if string(k) == prop {
				list, found = val, true
				return nil
			}
			x, err := p.dec.DecodeValue(val)
			if err != nil {
				return err
			}
			m[string(k)] = x
			return nil
		})
		if err != nil {
			return nil, true, nil, invalid(err)
		}
		if !found {
			return nil, true, nil, fmt.Errorf("%s page %d: payload_property %q is not in the response", p.c.where, i, prop)
		}
		body = m
	}
	if len(list) > 0 {
		switch list[0] {
		case '[':
			if items, err = engine.AppendRawElements(nil, list); err != nil {
				return nil, true, nil, invalid(err)
			}
			return body, true, items, nil
		case '{':
			return body, true, [][]byte{bytes.TrimRight(list, " \t\r\n")}, nil
		}
	}
	// Anything else (null, a scalar, invalid text): what the map path
	// makes of it.
	v, err := p.dec.DecodeValue(data)
	if err != nil {
		return nil, true, nil, invalid(err)
	}
	if _, err := extractItems(v, prop); err != nil {
		return nil, true, nil, fmt.Errorf("%s page %d: %w", p.c.where, i, err)
	}
	return body, true, nil, nil
}

// rawEntities turns the text of a page's items into entity text with _id
// (and _updated) set, in one buffer. updated holds each entity's _updated
// when it is a string ("" otherwise), for the since token.
func (p *pager) rawEntities(pi int, items [][]byte, v jinja.Context) (out [][]byte, updated []string, err error) {
	c := p.c
	size := 0
	for _, it := range items {
		size += len(it) + 64
	}
	buf := make([]byte, 0, size)
	out = make([][]byte, len(items))
	updated = make([]string, len(items))
	var ctx jinja.Context
	for i, it := range items {
		if it[0] != '{' {
			x, err := p.dec.DecodeValue(it)
			if err != nil {
				return nil, nil, p.fail(pi, "item %d: invalid JSON: %v", i, err)
			}
			return nil, nil, p.fail(pi, "item %d is %s, not an object", i, describeValue(x))
		}
		var f rawFields
		if err := f.scan(it, c.idFast, c.updFast); err != nil {
			return nil, nil, p.fail(pi, "item %d: invalid JSON: %v", i, err)
		}
		id, upd, ok := p.rawKeys(len(items), &f, v)
		if !ok {
			// Something a name path does not print as it is (a boolean,
			// a missing key...): the template engine decides, on the
			// decoded item, as on the map path.
			x, err := p.dec.DecodeValue(it)
			if err != nil {
				return nil, nil, p.fail(pi, "item %d: invalid JSON: %v", i, err)
			}
			if ctx == nil {
				ctx = make(jinja.Context, max(len(c.idNames), len(c.updNames)))
			}
			var err2 error
			if id, upd, err2 = p.itemKeys(pi, i, len(items), x.(map[string]any), v, ctx); err2 != nil {
				return nil, nil, err2
			}
		} else if id == "" {
			if c.idT == nil {
				return nil, nil, p.fail(pi, "item %d has no _id and the operation has no id_expression", i)
			}
			return nil, nil, p.fail(pi, "item %d: id_expression %q rendered an empty _id", i, c.idExpr)
		}
		start := len(buf)
		buf = f.write(buf, it, id, upd, c.idT != nil || id != f.ownID || !f.ownIDString)
		out[i] = buf[start:len(buf):len(buf)]
		switch {
		case upd != "":
			updated[i] = upd
		case f.ownUpdString:
			updated[i] = f.ownUpd
		}
	}
	return out, updated, nil
}

// rawFields is what rawEntities reads from an item's root members (the
// last of duplicate keys, as in a decoded map).
type rawFields struct {
	idVal, updVal []byte // the value of the first key of idFast / updFast
	idSet, updSet bool
	hasOwnID      bool   // a root _id member
	ownID         string // its value when a string
	ownIDString   bool
	hasOwnUpd     bool // a root _updated member
	ownUpd        string
	ownUpdString  bool
	empty         bool // no members
}

func (f *rawFields) scan(item []byte, idPath, updPath fastPath) error {
	f.empty = true
	var ownID, ownUpd []byte
	err := engine.ScanRawObject(item, func(k, val []byte) error {
		f.empty = false
		if idPath != nil && string(k) == idPath[0] {
			f.idVal, f.idSet = val, true
		}
		if updPath != nil && string(k) == updPath[0] {
			f.updVal, f.updSet = val, true
		}
		switch string(k) {
		case "_id":
			f.hasOwnID, ownID = true, val
		case "_updated":
			f.hasOwnUpd, ownUpd = true, val
		}
		return nil
	})
	if err != nil {
		return err
	}
	if f.hasOwnID {
		f.ownID, f.ownIDString = rawString(ownID)
	}
	if f.hasOwnUpd {
		f.ownUpd, f.ownUpdString = rawString(ownUpd)
	}
	return nil
}

// rawKeys is itemKeys from an item's text. ok is false when the text
// alone does not say (the caller then decodes the item).
func (p *pager) rawKeys(n int, f *rawFields, v jinja.Context) (id, upd string, ok bool) {
	c := p.c
	if c.idT != nil {
		if id, ok = rawRender(c.idFast, f.idVal, f.idSet, v); !ok {
			return "", "", false
		}
	} else {
		if f.ownIDString {
			id = f.ownID
		}
		if id == "" && n == 1 {
			id = p.defaultID
		}
	}
	if id == "" {
		return "", "", true // the caller reports it
	}
	if c.updT != nil {
		if upd, ok = rawRender(c.updFast, f.updVal, f.updSet, v); !ok {
			return "", "", false
		}
	}
	return id, upd, true
}

// rawRender is fastPath.render for an item in text: val is the item's
// member named path[0] (set reports whether there is one; if not, the
// page variable of that name is used, as on the map path).
func rawRender(path fastPath, val []byte, set bool, v jinja.Context) (string, bool) {
	if !set {
		return path.render(func(n string) (any, bool) { x, ok := v[n]; return x, ok })
	}
	for _, k := range path[1:] {
		if len(val) == 0 || val[0] != '{' {
			return "", false
		}
		var next []byte
		found := false
		err := engine.ScanRawObject(val, func(key, x []byte) error {
			if string(key) == k {
				next, found = x, true
			}
			return nil
		})
		if err != nil || !found {
			return "", false
		}
		val = next
	}
	if len(val) == 0 {
		return "", false
	}
	switch c := val[0]; {
	case c == '"':
		return rawString(val)
	case c == '-' || c >= '0' && c <= '9':
		return string(val), true // a json.Number prints its text
	case c == 'n' && string(val) == "null":
		return "", len(path) > 1
	}
	return "", false
}

// rawString decodes a JSON string's text; ok is false for anything else
// (or invalid text, which PrepareRaw reports later).
func rawString(val []byte) (string, bool) {
	if len(val) < 2 || val[0] != '"' {
		return "", false
	}
	s := val[1 : len(val)-1]
	plain := true
	for _, b := range s {
		if b == '\\' || b < 0x20 || b == '"' {
			plain = false
			break
		}
	}
	if plain {
		if !utf8.Valid(s) {
			return "", false
		}
		return string(s), true
	}
	x, err := engine.DecodeValue(val)
	if err != nil {
		return "", false
	}
	str, ok := x.(string)
	return str, ok
}

// write appends the entity text of item to buf: the item with _id (when
// setID) and _updated (when upd is set) written into it. Keys it sets
// come first when the item has no member of that name (so ScanRawID finds
// _id at once), else last, where they win as in a decoded map.
func (f *rawFields) write(buf, item []byte, id, upd string, setID bool) []byte {
	atEnd := setID && f.hasOwnID || upd != "" && f.hasOwnUpd
	keys := func(buf []byte, lead bool) []byte {
		if setID {
			if lead {
				buf = append(buf, ',')
			}
			buf = append(buf, `"_id":`...)
			buf = engine.AppendString(buf, id)
			lead = true
		}
		if upd != "" {
			if lead {
				buf = append(buf, ',')
			}
			buf = append(buf, `"_updated":`...)
			buf = engine.AppendString(buf, upd)
		}
		return buf
	}
	if !setID && upd == "" {
		return append(buf, item...)
	}
	if atEnd {
		buf = append(buf, item[:len(item)-1]...)
		buf = keys(buf, !f.empty)
		return append(buf, '}')
	}
	buf = append(buf, '{')
	buf = keys(buf, false)
	if f.empty {
		return append(buf, '}')
	}
	buf = append(buf, ',')
	return append(buf, bytes.TrimLeft(item[1:], " \t\r\n")...)
}
