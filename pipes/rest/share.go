package rest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"sort"
	"strings"

	"github.com/zeebo/xxh3"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/dtl"
	"github.com/ferrydata/ferry/pipes/rest/httpclient"
	"github.com/ferrydata/ferry/templates/jinja"
)

// shareSchema validates transform-share-rest's properties (SPEC f,
// "transform-share-rest (reconstructed)", plus Ferry's extensions
// idempotency_key_header and operation_lookup_insert).
const shareSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "transform-share-rest properties",
  "type": "object",
  "required": ["rest_system", "primary_key"],
  "properties": {
    "rest_system": {"description": "The system:rest written to.", "type": "string", "minLength": 1},
    "primary_key": {"description": "The record's key: a property name, a \"_S.\" path, or a list for a composite key. An entity without one is inserted.", "type": ["string", "array"], "minLength": 1, "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "primary_key_insert": {"description": "Where an insert's response holds the new key (default primary_key); it becomes $generated_id.", "type": ["string", "array"], "minLength": 1, "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "is_natural_key": {"description": "The key is chosen by the client: a lookup 404 means insert.", "type": "boolean"},
    "share_dataset": {"description": "The share pipe's own dataset, where earlier inserts are looked up (default the sink dataset).", "type": "string", "minLength": 1},
    "payload_property": {"description": "The property the payload is handed to the operation under (default payload, sent as the body).", "type": "string", "minLength": 1},
    "operation_lookup": {"description": "The operation that reads one record (default lookup).", "type": "string", "minLength": 1},
    "operation_insert": {"description": "The operation that creates a record (default insert).", "type": "string", "minLength": 1},
    "operation_update": {"description": "The operation that updates a record (default update).", "type": "string", "minLength": 1},
    "operation_delete": {"description": "The operation that deletes a record (default delete).", "type": "string", "minLength": 1},
    "operation_lookup_insert": {"description": "An operation that finds a record an unanswered insert may have created (settling after a crash).", "type": "string", "minLength": 1},
    "operation_lookup_properties": {"description": "Properties for the lookup.", "type": "object"},
    "operation_insert_properties": {"description": "Properties for the insert.", "type": "object"},
    "operation_update_properties": {"description": "Properties for the update.", "type": "object"},
    "operation_delete_properties": {"description": "Properties for the delete.", "type": "object"},
    "operation_lookup_insert_properties": {"description": "Properties for operation_lookup_insert.", "type": "object"},
    "lookup_allowed_status_codes": {"description": "Statuses a lookup accepts (default 200; 404 is not found).", "type": "string"},
    "insert_allowed_status_codes": {"description": "Statuses an insert accepts (default 200, 201).", "type": "string"},
    "update_allowed_status_codes": {"description": "Statuses an update accepts (default 200, 201, 204).", "type": "string"},
    "delete_allowed_status_codes": {"description": "Statuses a delete accepts (default 200, 204; 404 is already gone).", "type": "string"},
    "operation_lookup_allowed_status_codes": {"description": "Same as lookup_allowed_status_codes.", "type": "string"},
    "operation_insert_allowed_status_codes": {"description": "Same as insert_allowed_status_codes.", "type": "string"},
    "operation_update_allowed_status_codes": {"description": "Same as update_allowed_status_codes.", "type": "string"},
    "operation_delete_allowed_status_codes": {"description": "Same as delete_allowed_status_codes.", "type": "string"},
    "rules": {"description": "DTL rule sets by name for the rewrite steps (lookup_rewrite_based_on, lookup_rewrite_update, ...).", "type": "object"},
    "rewrite_rules_payload": {"description": "DTL rules that rewrite insert and update payloads.", "type": "object"},
    "rewrite_rules_lookup": {"description": "DTL rules that rewrite the entity before a lookup.", "type": "object"},
    "rewrite_rules_mutation": {"description": "DTL rules that rewrite the entity before an insert, update or delete.", "type": "object"},
    "client_side_patching": {"description": "Send the looked-up record with the payload merged in (APIs that only take whole records).", "type": "boolean"},
    "idempotency_key_header": {"description": "Send each write's idempotency key in this header, so an insert replayed after a crash is not duplicated.", "type": "string", "minLength": 1}
  }
}`

// Share is Sesam's transform-share-rest implemented natively: the share
// side of the connector contract (SPEC f, h) under the engine's write-back
// protocol (engine.Sharer, docs/write-back.md).
//
// Per entity of the -transform dataset (the desired state):
//
//   - deleted with $replaced: nothing is sent (the id moved in a merge);
//   - deleted with a primary key: delete (after a lookup that compares the
//     record with $based_on when the entity has one; a record already gone
//     is fine);
//   - deleted without a primary key: nothing (never in the system);
//   - no primary key: insert, unless the share dataset has a record with a
//     $generated_id for the entity's _id or one of its $ids; an insert
//     needs $ids and $origin and must not carry $based_on;
//   - otherwise: when the desired state equals $based_on nothing is sent
//     at all; else the record is looked up and compared, restricted to
//     $based_on_properties when given, else to the desired state's keys
//     (minus _*, $* and primary key properties): the system already holds
//     the desired state: nothing; the record differs from $based_on: it was
//     changed in the system after it was collected, and is not overwritten
//     ($unsafe_skip_optimistic_locking overrides); else update. A lookup
//     404 means the record was deleted in the system (is_natural_key: the
//     key is client-chosen, and 404 means insert).
//
// Insert and update send the entity's $payload, else the entity without
// its _* and $* properties, under payload_property (default "payload",
// which the REST step sends as the body; with another name the
// operation's payload template reads it, as wave does). An insert's
// response gives $generated_id (primary_key_insert, else primary_key, of
// the response object or its first item). Statuses: lookup 200 (404: not
// found), insert 200/201, update 200/201/204, delete 200/204 (404: already
// gone), each overridable with <op>_allowed_status_codes.
type Share struct {
	pipe         string
	sys          *System
	shareDataset string
	// Calls by operation kind (nil when the system defines none).
	lookup, insert, update, del, lookupInsert *call
	props                                     map[*call]map[string]any
	// missing names operations that default names did not find.
	missing map[string]string
	ok      map[string]httpclient.StatusSet
	// key and insertKey are the primary key expressions; keyNames their
	// top-level property names (left out of comparisons).
	key, insertKey []*dtl.Expr
	keyNames       []string
	natural        bool
	payloadProp    string
	clientPatch    bool
	idemHeader     string
	// Compiled rule programs by rule name ("" when absent).
	rewrites map[string]*dtl.Program
	workers  int
	// offline answers lookups instead of the system (SetLookup).
	offline LookupFunc
}

// LookupFunc answers a share transform's lookups in place of its system:
// the record the system holds for entity e, whose primary key is key, or
// found false (a 404).
type LookupFunc func(ctx context.Context, e engine.Entity, key any) (record map[string]any, found bool, err error)

// SetLookup makes Plan answer lookups with fn instead of sending requests:
// `ferry test` plans share pipes without reaching their systems. Set it
// before the pipe runs. lookup_rewrite rules still apply to the record;
// Apply and Resolve are unaffected.
func (s *Share) SetLookup(fn LookupFunc) { s.offline = fn }

// Key returns the primary key of an entity or a record as the transform
// computes it (a list for a composite key); ok is false when a part is
// missing or null.
func (s *Share) Key(ctx context.Context, e map[string]any) (key any, ok bool, err error) {
	return keyOf(ctx, s.key, e)
}

var (
	_ engine.Sharer  = (*Share)(nil)
	_ engine.Workers = (*Share)(nil)
)

// Share operation kinds (the op keys of operation_<kind>).
const (
	kindLookup       = "lookup"
	kindInsert       = "insert"
	kindUpdate       = "update"
	kindDelete       = "delete"
	kindLookupInsert = "lookup_insert"
)

func newShare(b *engine.Build, props map[string]any) (engine.Transform, error) {
	s := &Share{pipe: b.Pipe, props: map[*call]map[string]any{}, missing: map[string]string{}, ok: map[string]httpclient.StatusSet{}, rewrites: map[string]*dtl.Program{}}
	sysID, _ := props["rest_system"].(string)
	raw, err := b.System(sysID)
	if err != nil {
		return nil, engine.Fieldf("/properties/rest_system", "%v", err)
	}
	var ok bool
	if s.sys, ok = raw.(*System); !ok {
		return nil, engine.Fieldf("/properties/rest_system", "system %q is not a system:rest", sysID)
	}
	s.workers = max(s.sys.Client.Config().MaxConcurrency, 1)
	if s.key, s.keyNames, err = keyExprs(props["primary_key"], "/properties/primary_key"); err != nil {
		return nil, err
	}
	s.insertKey = s.key
	if v, has := props["primary_key_insert"]; has {
		if s.insertKey, _, err = keyExprs(v, "/properties/primary_key_insert"); err != nil {
			return nil, err
		}
	}
	s.natural, _ = props["is_natural_key"].(bool)
	s.shareDataset, _ = props["share_dataset"].(string)
	s.payloadProp = "payload"
	if v, _ := props["payload_property"].(string); v != "" {
		s.payloadProp = v
	}
	s.clientPatch, _ = props["client_side_patching"].(bool)
	s.idemHeader, _ = props["idempotency_key_header"].(string)
	defaults := map[string]string{kindLookup: "200", kindInsert: "200,201", kindUpdate: "200,201,204", kindDelete: "200,204"}
	for _, kind := range []string{kindLookup, kindInsert, kindUpdate, kindDelete, kindLookupInsert} {
		c, err := s.operation(b, props, kind)
		if err != nil {
			return nil, err
		}
		switch kind {
		case kindLookup:
			s.lookup = c
		case kindInsert:
			s.insert = c
		case kindUpdate:
			s.update = c
		case kindDelete:
			s.del = c
		case kindLookupInsert:
			s.lookupInsert = c
			continue
		}
		codes := defaults[kind]
		key := kind + "_allowed_status_codes"
		for _, k := range []string{key, "operation_" + key} {
			if v, ok := props[k].(string); ok {
				codes, key = v, k
			}
		}
		if s.ok[kind], err = httpclient.ParseStatusSet(codes); err != nil {
			return nil, engine.Fieldf("/properties/"+key, "%v", err)
		}
	}
	if err := s.compileRules(props); err != nil {
		return nil, err
	}
	return s, nil
}

// operation builds the call of one operation kind: operation_<kind> names
// it (default: the kind's own name, except lookup_insert, which is only
// used when named). A named operation the system does not define is an
// error; a default name that is missing is a warning, and entities that
// need it fail.
func (s *Share) operation(b *engine.Build, props map[string]any, kind string) (*call, error) {
	key := "operation_" + kind
	name, named := props[key].(string)
	if !named {
		if kind == kindLookupInsert {
			return nil, nil
		}
		name = kind
	}
	op, ok := s.sys.Operations[name]
	if !ok {
		if named {
			return nil, engine.Fieldf("/properties/"+key, "operation %q is not defined by system %q (known: %s)", name, s.sys.ID, operationNames(nil, s.sys))
		}
		s.missing[kind] = name
		b.Warnf("/properties", "system %q defines no operation %q (the default of %s): entities that need a %s fail", s.sys.ID, name, key, kind)
		return nil, nil
	}
	o := overrides{log: b.Logger}
	if v, has := props[key+"_properties"]; has {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, engine.Fieldf("/properties/"+key+"_properties", "must be an object")
		}
		o.properties = m
	}
	c, err := newCall(s.sys, op, o)
	if err != nil {
		return nil, engine.Fieldf("/properties/"+key, "%v", err)
	}
	c.where = fmt.Sprintf("pipe %q %s", b.Pipe, c.where)
	return c, nil
}

// keyExprs compiles a primary key: a property name, a "_S." path, or a
// list of them (composite key).
func keyExprs(v any, ptr string) ([]*dtl.Expr, []string, error) {
	var list []string
	switch x := v.(type) {
	case string:
		list = []string{x}
	case []any:
		for i, e := range x {
			s, ok := e.(string)
			if !ok || s == "" {
				return nil, nil, engine.Fieldf(fmt.Sprintf("%s/%d", ptr, i), "must be a property name or a _S. path")
			}
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		return nil, nil, engine.Fieldf(ptr, "must be a property name, a _S. path or a list of them")
	}
	var exprs []*dtl.Expr
	var names []string
	for i, k := range list {
		path := k
		if !strings.HasPrefix(k, "_S.") {
			path = "_S." + k
		}
		x, err := dtl.CompileExpr(path, "primary_key", dtl.Options{})
		if err != nil {
			p := ptr
			if len(list) > 1 {
				p = fmt.Sprintf("%s/%d", ptr, i)
			}
			return nil, nil, engine.Fieldf(p, "%v", err)
		}
		exprs = append(exprs, x)
		names = append(names, strings.SplitN(strings.TrimPrefix(k, "_S."), ".", 2)[0])
	}
	return exprs, names, nil
}

// Rewrite rule names (SPEC f): lookup rewrites run per lookup-response
// item with _S the item and _R._S the shared entity; payload rewrites
// return the entity with a new $payload; lookup and mutation rewrites
// return the entity the request is rendered with.
const (
	ruleLookup          = "lookup_rewrite"
	ruleLookupBasedOn   = "lookup_rewrite_based_on"
	ruleLookupUpdate    = "lookup_rewrite_update"
	ruleInsertPayload   = "rewrite_insert_payload"
	ruleUpdatePayload   = "rewrite_update_payload"
	ruleAfterPatch      = "rewrite_update_payload_after_patch"
	ruleRewriteLookup   = "rewrite_lookup"
	ruleRewriteInsert   = "rewrite_insert"
	ruleRewriteUpdate   = "rewrite_update"
	ruleRewriteDelete   = "rewrite_delete"
	itemsKey            = "$share_lookup_items"
	rewrittenKey        = "$share_rewritten"
	perItemRule         = "per-item"
	wholeEntityRuleBody = "whole"
)

// compileRules compiles the DTL rule sets of rules, rewrite_rules_payload,
// rewrite_rules_lookup and rewrite_rules_mutation: one program per rule
// the share applies, each with all rules of the sets (so helper rules can
// be shared) and a default rule that applies it.
func (s *Share) compileRules(props map[string]any) error {
	all := map[string]any{}
	sets := map[string]string{}
	for _, set := range []string{"rules", "rewrite_rules_payload", "rewrite_rules_lookup", "rewrite_rules_mutation"} {
		m, _ := props[set].(map[string]any)
		for name, body := range m {
			if name == "default" {
				return engine.Fieldf("/properties/"+set+"/default", "a share rule set has no default rule (name the rule it implements, e.g. %s)", ruleLookup)
			}
			if prev, dup := sets[name]; dup {
				return engine.Fieldf("/properties/"+set+"/"+name, "rule %q is also defined in %s", name, prev)
			}
			all[name], sets[name] = body, set
		}
	}
	for name, set := range sets {
		var def []any
		switch name {
		case ruleLookup, ruleLookupUpdate:
			// Per item of the lookup response; _R._S is the entity.
			def = []any{[]any{"add", rewrittenKey, []any{"apply", name, "_S." + itemsKey}}}
		case ruleLookupBasedOn, ruleInsertPayload, ruleUpdatePayload, ruleAfterPatch, ruleRewriteLookup, ruleRewriteInsert, ruleRewriteUpdate, ruleRewriteDelete:
			def = []any{[]any{"add", rewrittenKey, []any{"apply", name, "_S."}}}
		default:
			continue // a helper rule
		}
		rules := maps.Clone(all)
		rules["default"] = def
		opts := dtl.DefaultOptions()
		opts.IDRequired = false
		prog, err := dtl.Compile(rules, opts)
		if err != nil {
			var de *dtl.Error
			if errors.As(err, &de) {
				return engine.Fieldf("/properties/"+set, "%s: %v", de.Path, de.Err)
			}
			return engine.Fieldf("/properties/"+set, "%v", err)
		}
		s.rewrites[name] = prog
	}
	return nil
}

// rewrite applies rule name to src (with _R._S = root) and returns the
// rule's output; ok is false when the rule filtered it or is absent.
func (s *Share) rewrite(ctx context.Context, name string, root map[string]any) (any, bool, error) {
	prog := s.rewrites[name]
	if prog == nil {
		return nil, false, nil
	}
	out, err := prog.Apply(ctx, root)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, false, nil
	}
	v, has := out[0][rewrittenKey]
	return v, has, nil
}

// Workers is the system's worker_threads: how many entities the engine
// plans and writes at once.
func (s *Share) Workers() int { return s.workers }

// ShareDataset is the share_dataset property.
func (s *Share) ShareDataset() string { return s.shareDataset }

// ResolvesInserts reports whether an insert whose outcome was lost can be
// settled: by resending it with its idempotency key, or by looking for the
// inserted record (operation_lookup_insert), or because the key is the
// client's own (is_natural_key).
func (s *Share) ResolvesInserts() bool {
	return s.idemHeader != "" || s.lookupInsert != nil || s.natural
}

// Transform is never called: the engine runs a share transform through
// the write-back protocol (it must be the pipe's last transform).
func (s *Share) Transform(ctx context.Context, in []engine.Entity) ([]engine.Entity, error) {
	return nil, errors.New("transform-share-rest runs only as the last transform of a share pipe")
}

// keyOf returns the entity's primary key (a list for a composite key);
// ok is false when a part is missing or null.
func keyOf(ctx context.Context, exprs []*dtl.Expr, e map[string]any) (any, bool, error) {
	parts := make([]any, 0, len(exprs))
	for _, x := range exprs {
		vs, err := x.Eval(ctx, e)
		if err != nil {
			return nil, false, err
		}
		if len(vs) == 0 || vs[0] == nil {
			return nil, false, nil
		}
		parts = append(parts, vs[0])
	}
	if len(parts) == 1 {
		return parts[0], true, nil
	}
	return parts, true, nil
}

func isTrue(e map[string]any, k string) bool {
	b, _ := e[k].(bool)
	return b
}

// strip returns e without its _* and $* properties: what a payload holds.
func strip(e map[string]any) map[string]any {
	out := make(map[string]any, len(e))
	for k, v := range e {
		if !strings.HasPrefix(k, "_") && !strings.HasPrefix(k, "$") {
			out[k] = v
		}
	}
	return out
}

// WouldDelete reports whether e is a delete with a primary key.
func (s *Share) WouldDelete(e engine.Entity) bool {
	if !isTrue(e, "_deleted") || isTrue(e, "$replaced") {
		return false
	}
	_, ok, err := keyOf(context.Background(), s.key, e)
	return ok && err == nil
}

// Plan decides what to do with one entity (see Share).
func (s *Share) Plan(ctx context.Context, e engine.Entity, records engine.ShareRecords) (*engine.ShareAction, error) {
	a := &engine.ShareAction{ID: engine.ID(e), Entity: e}
	key, hasKey, err := keyOf(ctx, s.key, e)
	if err != nil {
		a.Op = engine.ShareFailed
		a.Fail(engine.FailInvalid, fmt.Errorf("primary key: %w", err))
		return a, nil
	}
	unsafe := isTrue(e, "$unsafe_skip_optimistic_locking")
	switch {
	case isTrue(e, "_deleted") && isTrue(e, "$replaced"):
		a.Op, a.Reason = engine.ShareSkipReplaced, "deleted with $replaced: the entity was merged into another; not a real delete"
	case isTrue(e, "_deleted") && !hasKey:
		a.Op, a.Reason = engine.ShareSkipDeleteNonExistent, "deleted, and never in the system (no primary key)"
	case isTrue(e, "_deleted"):
		a.Key = key
		return a, s.planDelete(ctx, a, unsafe)
	case !hasKey:
		return a, s.planInsert(ctx, a, records)
	default:
		a.Key = key
		return a, s.planUpdate(ctx, a, unsafe)
	}
	return a, nil
}

func (s *Share) need(a *engine.ShareAction, kind string, c *call) bool {
	if c != nil {
		return true
	}
	a.Op = engine.ShareFailed
	a.Fail(engine.FailInvalid, fmt.Errorf("needs the %s operation, and system %q defines no operation %q (set operation_%s)", kind, s.sys.ID, s.missing[kind], kind))
	return false
}

func (s *Share) planInsert(ctx context.Context, a *engine.ShareAction, records engine.ShareRecords) error {
	e := a.Entity
	ids := engine.Identities(e)
	for _, id := range ids {
		rec, ok, err := records.Record(ctx, id)
		if err != nil {
			return fmt.Errorf("entity %s: share dataset: %w", engine.QuoteID(a.ID), err)
		}
		if ok && !emptyValue(rec["$generated_id"]) {
			a.Op = engine.ShareSkipAlreadyInserted
			a.Reason = fmt.Sprintf("already inserted: share record %q has $generated_id %s", id, describe(rec["$generated_id"]))
			return nil
		}
	}
	a.Op = engine.ShareFailed
	switch {
	case emptyValue(e["$ids"]):
		a.Fail(engine.FailInvalid, errors.New("an insert needs $ids (every identity of the entity, its _id included)"))
		return nil
	case emptyValue(e["$origin"]):
		a.Fail(engine.FailInvalid, errors.New("an insert needs $origin (the entity it comes from, so that the collect links the new record to it)"))
		return nil
	case e["$based_on"] != nil:
		a.Fail(engine.FailInvalid, errors.New("an insert must not carry $based_on (it describes a record collected from the system, and this entity has no primary key)"))
		return nil
	}
	if !s.need(a, kindInsert, s.insert) {
		return nil
	}
	payload, err := s.payload(ctx, e, ruleInsertPayload)
	if err != nil {
		a.Fail(engine.FailInvalid, err)
		return nil
	}
	a.Op, a.Payload, a.Reason = engine.ShareInsert, payload, "no primary key and no share record with a $generated_id: insert"
	a.IdempotencyKey = s.idempotencyKey(a)
	return nil
}

// payload builds an insert or update payload: $payload, else the entity
// without _* and $* properties; then the rewrite rule.
func (s *Share) payload(ctx context.Context, e map[string]any, rule string) (any, error) {
	var p any
	if v, ok := e["$payload"]; ok && v != nil {
		p = v
	} else {
		p = strip(e)
	}
	if s.rewrites[rule] == nil {
		return p, nil
	}
	root := maps.Clone(e)
	root["$payload"] = p
	out, ok, err := s.rewrite(ctx, rule, root)
	if err != nil || !ok {
		return p, err
	}
	if m, isMap := out.(map[string]any); isMap {
		if v, has := m["$payload"]; has {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%s must yield $payload", rule)
}

func (s *Share) planDelete(ctx context.Context, a *engine.ShareAction, unsafe bool) error {
	if !s.need(a, kindDelete, s.del) {
		return nil
	}
	a.Op, a.Reason = engine.ShareDelete, "deleted, with a primary key: delete"
	a.IdempotencyKey = s.idempotencyKey(a)
	based, hasBased := a.Entity["$based_on"].(map[string]any)
	if !hasBased || unsafe || s.lookup == nil {
		return nil
	}
	// Lost-write prevention for deletes: compare with $based_on first.
	live, found, err := s.lookupOne(ctx, a)
	if err != nil || a.Failed() {
		return err
	}
	if !found {
		a.Op, a.Reason = engine.ShareSkipAlreadyDeleted, "the record is already gone from the system"
		return nil
	}
	shape, paths := s.shape(ctx, a.Entity)
	b := s.basedOn(ctx, a.Entity, based)
	if d := differ(live, b, shape, paths); len(d) > 0 {
		a.Op = engine.ShareSkipModified
		a.Reason = "not deleted: the record changed in the system after it was collected (" + strings.Join(d, ", ") + ")"
		return nil
	}
	a.BasedOn = project(b, shape, paths)
	return nil
}

func (s *Share) planUpdate(ctx context.Context, a *engine.ShareAction, unsafe bool) error {
	e := a.Entity
	based, hasBased := e["$based_on"].(map[string]any)
	if !hasBased && !unsafe && !s.natural {
		a.Op = engine.ShareFailed
		a.Fail(engine.FailInvalid, errors.New("an update needs $based_on (the record as collected) so that changes made in the system are not overwritten; set $unsafe_skip_optimistic_locking to write without it"))
		return nil
	}
	shape, paths := s.shape(ctx, e)
	desired := project(shape, shape, paths)
	var b map[string]any
	if hasBased {
		b = s.basedOn(ctx, e, based)
		if len(differ(shape, b, shape, paths)) == 0 {
			a.Op, a.Reason = engine.ShareSkipUnchanged, "the desired state equals $based_on: nothing to write"
			return nil
		}
	}
	if !s.need(a, kindLookup, s.lookup) {
		return nil
	}
	live, found, err := s.lookupOne(ctx, a)
	if err != nil || a.Failed() {
		return err
	}
	if !found {
		if s.natural {
			// A client-chosen key that the system does not have yet.
			if !s.need(a, kindInsert, s.insert) {
				return nil
			}
			payload, err := s.payload(ctx, e, ruleInsertPayload)
			if err != nil {
				a.Op = engine.ShareFailed
				a.Fail(engine.FailInvalid, err)
				return nil
			}
			a.Op, a.Payload, a.Reason = engine.ShareInsert, payload, "natural key not found in the system: insert"
			a.Expect = desired
			a.IdempotencyKey = s.idempotencyKey(a)
			return nil
		}
		a.Op, a.Reason = engine.ShareSkipModified, "not updated: the record was deleted in the system after it was collected"
		return nil
	}
	if d := differ(live, shape, shape, paths); len(d) == 0 {
		a.Op, a.Reason = engine.ShareSkipUnchanged, "the system already holds the desired state"
		return nil
	}
	if hasBased && !unsafe {
		if d := differ(live, b, shape, paths); len(d) > 0 {
			a.Op = engine.ShareSkipModified
			a.Reason = "not updated: the record changed in the system after it was collected (" + strings.Join(d, ", ") + "); the next collect brings the change in"
			return nil
		}
	}
	if !s.need(a, kindUpdate, s.update) {
		return nil
	}
	payload, err := s.payload(ctx, e, ruleUpdatePayload)
	if err != nil {
		a.Op = engine.ShareFailed
		a.Fail(engine.FailInvalid, err)
		return nil
	}
	if s.clientPatch {
		base := live
		if out, ok, err := s.rewrite(ctx, ruleLookupUpdate, withItems(e, []any{live})); err != nil {
			a.Op = engine.ShareFailed
			a.Fail(engine.FailInvalid, err)
			return nil
		} else if ok {
			if m, isMap := first(out).(map[string]any); isMap {
				base = m
			}
		}
		payload = deepPatch(base, payload)
		if out, ok, err := s.rewrite(ctx, ruleAfterPatch, mergeKey(e, "$payload", payload)); err != nil {
			a.Op = engine.ShareFailed
			a.Fail(engine.FailInvalid, err)
			return nil
		} else if m, isMap := out.(map[string]any); ok && isMap && m["$payload"] != nil {
			payload = m["$payload"]
		}
	}
	a.Op, a.Payload, a.Reason = engine.ShareUpdate, payload, "the desired state differs from the record, which is as collected: update"
	a.Expect = desired
	if b != nil {
		a.BasedOn = project(b, shape, paths)
	}
	a.IdempotencyKey = s.idempotencyKey(a)
	return nil
}

// shape returns what comparisons look at: the desired state without _*,
// $* and primary key properties, and the $based_on_properties paths when
// the entity lists them.
func (s *Share) shape(ctx context.Context, e map[string]any) (map[string]any, [][]string) {
	shape := strip(e)
	for _, k := range s.keyNames {
		delete(shape, k)
	}
	var paths [][]string
	if l, ok := e["$based_on_properties"].([]any); ok {
		for _, p := range l {
			if ps, ok := p.(string); ok && ps != "" {
				paths = append(paths, strings.Split(ps, "."))
			}
		}
	}
	return shape, paths
}

// basedOn returns $based_on after lookup_rewrite_based_on.
func (s *Share) basedOn(ctx context.Context, e, based map[string]any) map[string]any {
	if s.rewrites[ruleLookupBasedOn] == nil {
		return based
	}
	out, ok, err := s.rewrite(ctx, ruleLookupBasedOn, based)
	if m, isMap := out.(map[string]any); err == nil && ok && isMap {
		return m
	}
	return based
}

func withItems(e map[string]any, items []any) map[string]any {
	return mergeKey(e, itemsKey, items)
}

func mergeKey(e map[string]any, k string, v any) map[string]any {
	out := maps.Clone(e)
	out[k] = v
	return out
}

// first returns a rewrite output's first item (a list of several, or one).
func first(v any) any {
	if l, ok := v.([]any); ok {
		if len(l) == 0 {
			return nil
		}
		return l[0]
	}
	return v
}

// lookupOne looks the entity's record up: found false on 404 (or no item
// after lookup_rewrite). Several records fail the entity.
func (s *Share) lookupOne(ctx context.Context, a *engine.ShareAction) (map[string]any, bool, error) {
	ent := a.Entity
	if out, ok, err := s.rewrite(ctx, ruleRewriteLookup, ent); err != nil {
		a.Op = engine.ShareFailed
		a.Fail(engine.FailInvalid, err)
		return nil, false, nil
	} else if m, isMap := out.(map[string]any); ok && isMap {
		ent = m
	}
	var items []any
	if s.offline != nil {
		rec, found, err := s.offline(ctx, a.Entity, a.Key)
		if err != nil {
			a.Op = engine.ShareFailed
			a.Fail(engine.FailInvalid, fmt.Errorf("lookup: %w", err))
			return nil, false, nil
		}
		if !found {
			return nil, false, nil
		}
		items = []any{rec}
	} else {
		var ok bool
		if items, ok = s.fetchLookup(ctx, a, ent); !ok {
			return nil, false, nil
		}
	}
	if s.rewrites[ruleLookup] != nil {
		out, ok, err := s.rewrite(ctx, ruleLookup, withItems(a.Entity, items))
		if err != nil {
			a.Op = engine.ShareFailed
			a.Fail(engine.FailInvalid, err)
			return nil, false, nil
		}
		switch x := out.(type) {
		case nil:
			items = nil
		case []any:
			items = x
		default:
			items = []any{x}
		}
		if !ok {
			items = nil
		}
	}
	switch len(items) {
	case 0:
		return nil, false, nil
	case 1:
		m, isMap := items[0].(map[string]any)
		if !isMap {
			a.Op = engine.ShareFailed
			a.Fail(engine.FailInvalid, fmt.Errorf("lookup returned %s, not a record", describe(items[0])))
			return nil, false, nil
		}
		return m, true, nil
	}
	a.Op = engine.ShareFailed
	a.Fail(engine.FailInvalid, fmt.Errorf("lookup returned %d records for key %s; it must identify one (narrow the operation, or add a lookup_rewrite rule)", len(items), describe(a.Key)))
	return nil, false, nil
}

// fetchLookup sends the lookup request of a (for ent) and returns the
// records of the response; ok is false on a 404 (found nothing) or a
// failure, which it records in a.
func (s *Share) fetchLookup(ctx context.Context, a *engine.ShareAction, ent engine.Entity) ([]any, bool) {
	ex := s.send(ctx, s.lookup, ent, nil, false, "", false)
	a.Requests++
	if ex.failure != "" {
		a.Op = engine.ShareFailed
		a.Fail(engine.FailRetry, fmt.Errorf("lookup: %w", ex.err))
		if ex.failure == engine.FailInvalid {
			a.Failure = engine.FailInvalid
		}
		return nil, false
	}
	if ex.status == 404 {
		return nil, false
	}
	if !s.ok[kindLookup].Contains(ex.status) {
		a.Op = engine.ShareFailed
		a.Status = ex.status
		kind := engine.FailRetry
		if ex.status/100 == 4 && ex.status != 408 && ex.status != 429 && ex.status != 401 && ex.status != 403 {
			kind = engine.FailInvalid
		}
		a.Fail(kind, fmt.Errorf("error-lookup: %w", ex.statusErr()))
		return nil, false
	}
	items, err := s.items(ex, s.lookup)
	if err != nil {
		a.Op = engine.ShareFailed
		a.Fail(engine.FailInvalid, fmt.Errorf("lookup: %w", err))
		return nil, false
	}
	return items, true
}

// items returns the records of a response: the operation's
// payload_property, else the body; a list is the records, an object one,
// null none.
func (s *Share) items(ex exchange, c *call) ([]any, error) {
	if ex.body == nil {
		return nil, nil
	}
	return extractItems(ex.body, c.payloadProperty)
}

// Apply sends the insert, update or delete of a.
func (s *Share) Apply(ctx context.Context, a *engine.ShareAction) error {
	var c *call
	var kind, rule string
	switch a.Op {
	case engine.ShareInsert:
		c, kind, rule = s.insert, kindInsert, ruleRewriteInsert
	case engine.ShareUpdate:
		c, kind, rule = s.update, kindUpdate, ruleRewriteUpdate
	case engine.ShareDelete:
		c, kind, rule = s.del, kindDelete, ruleRewriteDelete
	default:
		return fmt.Errorf("entity %s: nothing to apply for %s", engine.QuoteID(a.ID), a.Op)
	}
	ent := a.Entity
	if out, ok, err := s.rewrite(ctx, rule, ent); err != nil {
		a.Fail(engine.FailInvalid, err)
		return nil
	} else if m, isMap := out.(map[string]any); ok && isMap {
		ent = m
	}
	if a.Op != engine.ShareDelete {
		ent = mergeKey(ent, s.payloadProp, a.Payload)
	}
	raw := s.payloadProp == "payload" && a.Op != engine.ShareDelete
	noReplay := a.Op == engine.ShareInsert && s.idemHeader == "" && !s.natural
	ex := s.send(ctx, c, ent, a.Payload, raw, a.IdempotencyKey, noReplay)
	a.Requests++
	a.Status = ex.status
	if ex.failure != "" {
		a.Fail(ex.failure, fmt.Errorf("error-%s: %w", kind, ex.err))
		return nil
	}
	if a.Op == engine.ShareDelete && ex.status == 404 {
		a.Reason = "deleted (the record was already gone)"
		return nil
	}
	if !s.ok[kind].Contains(ex.status) {
		a.Fail(statusFailure(a.Op, ex.status), fmt.Errorf("error-%s: %w", kind, ex.statusErr()))
		return nil
	}
	if a.Op == engine.ShareInsert {
		if s.natural && a.Key != nil {
			a.GeneratedID = a.Key
			return nil
		}
		items, err := s.items(ex, c)
		if err == nil && len(items) > 0 {
			if m, ok := items[0].(map[string]any); ok {
				if gid, ok, kerr := keyOf(ctx, s.insertKey, m); kerr == nil && ok {
					a.GeneratedID = gid
					return nil
				}
			}
		}
		// The record was created but cannot be identified: recording it
		// as inserted is impossible and inserting again would duplicate
		// it, so the insert is in doubt.
		a.Fail(engine.FailInDoubt, fmt.Errorf("error-insert: the insert succeeded (status %d) but the response has no primary key %s; nothing is recorded as inserted", ex.status, strings.Join(s.keyNames, ", ")))
	}
	return nil
}

// statusFailure classifies an unaccepted status of a write.
func statusFailure(op engine.ShareOp, status int) engine.ShareFailure {
	switch {
	case status == 429 || status == 503 || status == 401 || status == 403 || status == 408:
		return engine.FailRetry // refused before it was processed
	case status >= 500:
		// 500, 502, 504: the write may have happened.
		return engine.FailInDoubt
	case status/100 == 4:
		return engine.FailInvalid
	}
	return engine.FailRetry
}

// Resolve settles a journaled write by asking the system.
func (s *Share) Resolve(ctx context.Context, a *engine.ShareAction) (engine.Resolution, error) {
	switch a.Op {
	case engine.ShareInsert:
		switch {
		case s.natural && s.lookup != nil:
			live, found, err := s.lookupOne(ctx, a)
			if err != nil || a.Failed() {
				return 0, errors.Join(err, errorOf(a))
			}
			if found {
				a.GeneratedID = a.Key
				_ = live
				return engine.Applied, nil
			}
			return engine.NotApplied, nil
		case s.lookupInsert != nil:
			ex := s.send(ctx, s.lookupInsert, a.Entity, nil, false, a.IdempotencyKey, false)
			a.Requests++
			if ex.failure != "" {
				return 0, fmt.Errorf("operation_lookup_insert: %w", ex.err)
			}
			if ex.status == 404 {
				return engine.NotApplied, nil
			}
			if ex.status/100 != 2 {
				return 0, fmt.Errorf("operation_lookup_insert: %w", ex.statusErr())
			}
			items, err := s.items(ex, s.lookupInsert)
			if err != nil {
				return 0, fmt.Errorf("operation_lookup_insert: %w", err)
			}
			switch len(items) {
			case 0:
				return engine.NotApplied, nil
			case 1:
				m, _ := items[0].(map[string]any)
				gid, ok, err := keyOf(ctx, s.insertKey, m)
				if err != nil || !ok {
					return engine.InDoubt, nil
				}
				a.GeneratedID, a.Status = gid, ex.status
				return engine.Applied, nil
			}
			return engine.InDoubt, nil
		case s.idemHeader != "":
			// Resending with the same key is safe: the system answers the
			// record the first request created, or creates it now.
			a.Error, a.Failure = "", ""
			if err := s.Apply(ctx, a); err != nil {
				return 0, err
			}
			if a.Failed() {
				if a.Failure == engine.FailInvalid {
					return engine.InDoubt, nil
				}
				return 0, errorOf(a)
			}
			return engine.Applied, nil
		}
		return engine.InDoubt, nil
	case engine.ShareUpdate, engine.ShareDelete:
		if s.lookup == nil {
			if a.Op == engine.ShareDelete {
				return engine.NotApplied, nil // deleting again is harmless
			}
			return engine.InDoubt, nil
		}
		live, found, err := s.lookupOne(ctx, a)
		if err != nil {
			return 0, err
		}
		if a.Failed() {
			return 0, errorOf(a)
		}
		shape, paths := s.shape(ctx, a.Entity)
		if a.Op == engine.ShareDelete {
			switch {
			case !found:
				return engine.Applied, nil
			case a.BasedOn == nil:
				return engine.NotApplied, nil
			case len(differ(live, asMap(a.BasedOn), shape, paths)) == 0:
				return engine.NotApplied, nil
			}
			return engine.Superseded, nil
		}
		switch {
		case !found:
			return engine.Superseded, nil
		case len(differ(live, shape, shape, paths)) == 0:
			return engine.Applied, nil
		case a.BasedOn == nil || len(differ(live, asMap(a.BasedOn), shape, paths)) == 0:
			return engine.NotApplied, nil
		}
		return engine.Superseded, nil
	}
	return engine.NotApplied, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func errorOf(a *engine.ShareAction) error {
	if a.Error == "" {
		return nil
	}
	return errors.New(a.Error)
}

// Record builds the share-dataset entity of a settled action.
func (s *Share) Record(a *engine.ShareAction, prev engine.Entity) engine.Entity {
	e := a.Entity
	rec := engine.Entity{"_id": a.ID}
	if isTrue(e, "_deleted") {
		rec["_deleted"] = true
	}
	for _, k := range s.keyNames {
		if v, ok := e[k]; ok {
			rec[k] = v
		}
	}
	src := make(map[string]any, len(e))
	for k, v := range e {
		switch k {
		case "_updated", "_ts", "_hash", "_previous":
		default:
			src[k] = v
		}
	}
	rec["$source"] = src
	for _, k := range []string{"$origin", "$replaced"} {
		if v, ok := e[k]; ok {
			rec[k] = v
		}
	}
	rec["$last_operation"] = string(a.Op)
	if a.Reason != "" {
		rec["$reason"] = a.Reason
	}
	if a.Status != 0 {
		rec["$status"] = a.Status
	}
	if a.Attempt > 0 {
		rec["$attempt"] = a.Attempt
	}
	if a.Recovered {
		rec["$recovered"] = true
	}
	if prev != nil {
		if v, ok := prev["$success"]; ok {
			rec["$previous_success"] = v
		}
		if gid := prev["$generated_id"]; !emptyValue(gid) {
			rec["$generated_id"] = gid
		}
		if o := prev["$origin"]; !emptyValue(o) && rec["$origin"] == nil {
			rec["$origin"] = o
		}
	}
	if a.Op == engine.ShareInsert && !a.Failed() && !emptyValue(a.GeneratedID) {
		rec["$generated_id"] = a.GeneratedID
	}
	if a.Failed() {
		rec["$success"] = false
		rec["$error"] = a.Error
		rec["$failure"] = string(a.Failure)
	} else {
		rec["$success"] = true
	}
	if a.Op == engine.ShareSkipReplaced && !emptyValue(rec["$generated_id"]) {
		// Keep the origin link joinable for the collect's $origin hop.
		delete(rec, "_deleted")
	}
	return rec
}

// idempotencyKey identifies a write: the pipe, the entity, the operation
// and the payload. Resending the same desired state gives the same key.
func (s *Share) idempotencyKey(a *engine.ShareAction) string {
	h := xxh3.New()
	for _, part := range []string{s.pipe, a.ID, string(a.Op)} {
		h.WriteString(part)
		h.Write([]byte{0})
	}
	if b, err := engine.AppendCanonical(nil, a.Payload); err == nil {
		h.Write(b)
	}
	if b, err := engine.AppendCanonical(nil, a.Key); err == nil {
		h.Write(b)
	}
	sum := h.Sum128().Bytes()
	return "ferry-" + hex.EncodeToString(sum[:])
}

// exchange is one request's outcome.
type exchange struct {
	status int
	body   any
	resp   *httpclient.Response
	// failure and err are set when no usable answer was obtained.
	failure engine.ShareFailure
	err     error
}

func (x exchange) statusErr() error {
	if x.resp == nil {
		return fmt.Errorf("status %d", x.status)
	}
	return x.resp.Err(func(int) bool { return false })
}

// send renders c with entity e and sends one request, whatever its
// status. raw sends payload as the body instead of the operation's payload
// template; key is sent as the idempotency header (and is the template
// variable idempotency_key).
func (s *Share) send(ctx context.Context, c *call, e engine.Entity, payload any, raw bool, key string, noReplay bool) exchange {
	base := jinja.Context{"entity": map[string]any(e), "source_entity": map[string]any(e), "properties": c.properties, "idempotency_key": key}
	p := newPager(c, base, "")
	p.single, p.entities = true, false
	p.allowed = func(int) bool { return true }
	if raw {
		p.rawPayload, p.hasRawPayload = payload, true
	}
	if key != "" && s.idemHeader != "" {
		p.headers = map[string]string{s.idemHeader: key}
	}
	p.noReplay = noReplay
	pg, err := p.next(ctx)
	if err != nil {
		if pg != nil && pg.resp != nil {
			// An answer the operation rejects: error_expression (the
			// system reports an error in a 200, as GraphQL does) means
			// it refused the request; a body that cannot be parsed after
			// a write may hide a change that happened.
			ex := exchange{status: pg.resp.Status, resp: pg.resp, failure: engine.FailInvalid, err: err}
			if noReplay || c.op.Method != "GET" && !strings.Contains(err.Error(), "error_expression") {
				ex.failure = engine.FailInDoubt
			}
			return ex
		}
		return exchange{failure: transportFailure(err), err: err}
	}
	return exchange{status: pg.resp.Status, body: pg.body, resp: pg.resp}
}

// transportFailure classifies a request that got no answer: rendering
// errors and invalid requests are the entity's; a connection that was
// never made or a token that could not be fetched means nothing was sent;
// anything else (a timeout, a connection lost) may have reached the
// system.
func transportFailure(err error) engine.ShareFailure {
	var te *httpclient.TransportError
	if !errors.As(err, &te) {
		var ae *httpclient.AuthError
		if errors.As(err, &ae) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return engine.FailRetry
		}
		return engine.FailInvalid // rendering, invalid URL
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return engine.FailRetry
	}
	return engine.FailInDoubt
}

// emptyValue is what DTL add-if skips: null, "", the empty list.
func emptyValue(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	}
	return false
}

func describe(v any) string {
	b, err := engine.AppendCanonical(nil, v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// project restricts v to shape's structure (or to paths): what the
// comparisons and the journal keep.
func project(v, shape map[string]any, paths [][]string) map[string]any {
	out := map[string]any{}
	if len(paths) > 0 {
		for _, p := range paths {
			if x, ok := at(v, p); ok {
				out[strings.Join(p, ".")] = x
			}
		}
		return out
	}
	for k, sv := range shape {
		if x, ok := v[k]; ok {
			out[k] = restrict(x, sv)
		}
	}
	return out
}

// differ lists the properties (of shape, or the paths) whose values differ
// between x and y, each compared restricted to shape's structure: nested
// objects only on the keys the desired state has, lists in any order,
// numbers by value, a missing property equal to null.
func differ(x, y, shape map[string]any, paths [][]string) []string {
	var out []string
	if len(paths) > 0 {
		for _, p := range paths {
			a, _ := at(x, p)
			b, _ := at(y, p)
			if !same(a, b) {
				out = append(out, strings.Join(p, "."))
			}
		}
		return out
	}
	keys := make([]string, 0, len(shape))
	for k := range shape {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !same(restrict(x[k], shape[k]), restrict(y[k], shape[k])) {
			out = append(out, k)
		}
	}
	return out
}

// at reads a dotted path of nested objects.
func at(v map[string]any, path []string) (any, bool) {
	var cur any = v
	for _, step := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[step]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// restrict keeps of v the keys shape has, recursively through objects.
func restrict(v, shape any) any {
	vm, ok1 := v.(map[string]any)
	sm, ok2 := shape.(map[string]any)
	if !ok1 || !ok2 {
		return v
	}
	out := make(map[string]any, len(sm))
	for k, sv := range sm {
		if x, ok := vm[k]; ok {
			out[k] = restrict(x, sv)
		}
	}
	return out
}

// same compares two JSON values as the share does.
func same(a, b any) bool {
	return normal(a) == normal(b)
}

// normal is a comparison key: canonical JSON with null properties
// dropped, numbers by value and lists sorted.
func normal(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k, e := range x {
			if e != nil {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(quote(k))
			b.WriteByte(':')
			b.WriteString(normal(x[k]))
		}
		b.WriteByte('}')
		return b.String()
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = normal(e)
		}
		sort.Strings(parts)
		return "[" + strings.Join(parts, ",") + "]"
	}
	if k, ok := dtlNumberKey(v); ok {
		return k
	}
	b, err := engine.AppendCanonical(nil, v)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

func quote(s string) string {
	b, _ := engine.AppendCanonical(nil, s)
	return string(b)
}

// dtlNumberKey renders a number by value (1, 1.0 and 1e0 alike).
func dtlNumberKey(v any) (string, bool) {
	n, ok := v.(interface{ String() string })
	if _, isNum := v.(interface{ Float64() (float64, error) }); !isNum || !ok {
		return "", false
	}
	r, ok := parseRat(n.String())
	if !ok {
		return "", false
	}
	return "n" + r, true
}

// parseRat returns the exact value of a JSON number's text; very large
// exponents are left alone (false).
func parseRat(s string) (string, bool) {
	if i := strings.IndexAny(s, "eE"); i >= 0 && len(s)-i > 5 {
		return "", false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return "", false
	}
	return r.RatString(), true
}

// deepPatch returns base with patch merged in (objects recursively;
// other values replace).
func deepPatch(base map[string]any, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range pm {
		if bm, ok := out[k].(map[string]any); ok {
			out[k] = deepPatch(bm, v)
			continue
		}
		out[k] = v
	}
	return out
}
