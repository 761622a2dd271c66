package pipes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ferrydata/ferry/engine"
	"github.com/ferrydata/ferry/pipes/dtl"
)

const mergeSchema = `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "merge source",
  "type": "object",
  "required": ["datasets"],
  "properties": {
    "type": {"const": "merge"},
    "comment": {},
    "version": {"description": "Sesam's merge version; both run version 2 semantics (default 1).", "enum": [1, 2]},
    "datasets": {"description": "\"dataset alias\" (or \"dataset\") per input; aliases name the datasets in equality rules.", "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "equality": {"description": "Rules: [\"eq\", A, B], [\"or\", RULE, ...], [\"and\", ...]; A and B are DTL expressions over one alias each (\"crm.orgNumber\").", "type": "array", "items": {"type": "array", "minItems": 1}},
    "equality_sets": {"description": "Lists of expressions that are all equal: [[\"a.x\", \"b.x\", \"c.y\"]].", "type": "array", "items": {"type": "array", "minItems": 1}},
    "identity": {"description": "The merged _id: composite (every member's) or first (the first member's). Default composite.", "enum": ["composite", "first"]},
    "strategy": {"description": "How members' properties combine: default, compact or list (each member under $merged). Default default.", "enum": ["default", "compact", "list"]},
    "max_merged": {"description": "A run that would merge more entities into one fails (default 50000).", "type": "integer", "minimum": 1},
    "supports_signalling": {"description": "Whether changes in the input datasets trigger a run (default: true unless the pump sets a cron or an interval under one hour).", "type": "boolean"},
    "if_source_empty": {"description": "With \"fail\", a full run that reads nothing fails instead of deletion-tracking every entity away.", "enum": ["accept", "fail"]}
  }
}`

// defaultMaxMerged is Sesam's default for max_merged.
const defaultMaxMerged = 50000

// defaultMergeChunk is how many changed input entities a merge reader
// gathers before it re-merges them together (see docs/merge.md).
const defaultMergeChunk = 20000

// Merge is Sesam's merge source (version 2 semantics): it reads several
// datasets, finds which entities are the same through equality rules and
// emits one merged entity per cluster of equal entities. docs/merge.md
// describes the semantics; in short:
//
//   - Equality is by key spaces. The expressions of the equality rules
//     that are linked by "eq" (directly or through a shared expression;
//     an equality set links all its expressions) form one key space; an
//     entity's keys in it are the values of the expressions on its
//     dataset's alias. Two live entities that share a key merge, whatever
//     their datasets, and merging is transitive. Values compare as DTL
//     "eq" compares them (numbers by value, strings exactly, a list by
//     each element); null and empty lists never match. An "and" rule is
//     a key space of its own whose keys are tuples.
//   - Deleted entities never merge: each is emitted on its own, deleted.
//   - The merged entity's _id follows identity ("composite": "0|a1|1|b1",
//     "first": the first member's _id; members ordered by the position of
//     their dataset in datasets, then by _id), its $ids is the union of
//     the members' $ids (an entity without $ids contributes the NI
//     "~:<dataset>:<_id>"), and its properties follow strategy.
//   - An output _id that no longer applies (its cluster gained or lost a
//     member) is re-emitted deleted with "$replaced": true.
//
// Runs are incremental: each dataset is read from its own offset (the
// token is the merge_datasets one), and only the clusters of the entities
// read are re-merged, through indexes kept in the store's key-value
// namespace "merge:<pipe>" and changed in the transaction that commits
// the batch.
type Merge struct {
	pipe      string
	Datasets  []string // dataset names, in config order
	Aliases   []string // alias per dataset
	Identity  string   // "composite" | "first"
	Strategy  string   // "default" | "compact" | "list"
	MaxMerged int

	// exprs holds per dataset (index as Datasets) the equality
	// expressions on its alias.
	exprs [][]eqExpr
	// andRules are the "and" rules (tuple keys).
	andRules []andRule
	// chunk is how many changed input entities are merged together.
	chunk int
}

// eqExpr is one equality expression on one alias, in a key space.
type eqExpr struct {
	space string // key space signature
	expr  *dtl.Expr
}

// andRule is an ["and", ["eq", ...], ...] rule: a key space of tuples.
// sides maps a dataset index to its expression per conjunct.
type andRule struct {
	space string
	sides map[int][]*dtl.Expr
}

func newMerge(b *engine.Build, cfg map[string]any) (engine.Source, error) {
	m := &Merge{pipe: b.Pipe, Identity: "composite", Strategy: "default", MaxMerged: defaultMaxMerged, chunk: defaultMergeChunk}
	if s, ok := cfg["identity"].(string); ok {
		m.Identity = s
	}
	if s, ok := cfg["strategy"].(string); ok {
		m.Strategy = s
	}
	if n, ok := cfg["max_merged"].(json.Number); ok {
		v, err := n.Int64()
		if err != nil || v < 1 {
			return nil, engine.Fieldf("/max_merged", "must be a positive integer")
		}
		m.MaxMerged = int(min(v, 1<<30))
	}
	raw, _ := cfg["datasets"].([]any)
	alias := map[string]int{}
	for i, v := range raw {
		s, _ := v.(string)
		p := fmt.Sprintf("/datasets/%d", i)
		f := strings.Fields(s)
		var ds, al string
		switch len(f) {
		case 1:
			ds, al = f[0], f[0]
		case 2:
			ds, al = f[0], f[1]
		default:
			return nil, engine.Fieldf(p, `expected "dataset alias", got %q`, s)
		}
		if strings.HasPrefix(al, "_") || strings.Contains(al, ".") {
			return nil, engine.Fieldf(p, "alias %q must not start with \"_\" or contain \".\" (give the dataset an alias: \"%s x\")", al, ds)
		}
		if slices.Contains(m.Datasets, ds) {
			return nil, engine.Fieldf(p, "dataset %q is listed twice", ds)
		}
		if _, dup := alias[al]; dup {
			return nil, engine.Fieldf(p, "alias %q is used twice", al)
		}
		alias[al] = i
		m.Datasets = append(m.Datasets, ds)
		m.Aliases = append(m.Aliases, al)
	}
	if len(m.Datasets) == 0 {
		return nil, engine.Fieldf("/datasets", "list at least one dataset")
	}
	if err := m.compileEquality(cfg, alias); err != nil {
		return nil, err
	}
	return m, nil
}

// eqSide is one side of an "eq" rule before compilation.
type eqSide struct {
	raw  any
	text string // canonical JSON of raw: the expression's identity
	ds   int
	path string // DTL path for errors, e.g. "equality[0][1]"
}

// compileEquality reads equality and equality_sets into key spaces.
// Expressions linked by "eq" (an equality set links all its members) are
// joined with a union-find on their canonical text.
func (m *Merge) compileEquality(cfg map[string]any, alias map[string]int) error {
	var sides []eqSide
	index := map[string]int{} // text -> position in sides
	parent := []int{}
	find := func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	add := func(raw any, path string) (int, error) {
		ds, err := exprAlias(raw, alias, path)
		if err != nil {
			return 0, err
		}
		text, err := engine.AppendCanonical(nil, raw)
		if err != nil {
			return 0, engine.Fieldf(dtlPointer(path), "%v", err)
		}
		if i, ok := index[string(text)]; ok {
			return i, nil
		}
		index[string(text)] = len(sides)
		sides = append(sides, eqSide{raw: raw, text: string(text), ds: ds, path: path})
		parent = append(parent, len(parent))
		return len(sides) - 1, nil
	}
	union := func(a, b int) { parent[find(a)] = find(b) }

	var ands []struct {
		raw  []any
		path string
	}
	var rule func(raw any, path string) error
	rule = func(raw any, path string) error {
		l, ok := raw.([]any)
		if !ok || len(l) == 0 {
			return engine.Fieldf(dtlPointer(path), `an equality rule is ["eq", A, B], ["or", RULE...] or ["and", ["eq", A, B]...]`)
		}
		switch l[0] {
		case "eq":
			if len(l) != 3 {
				return engine.Fieldf(dtlPointer(path), `"eq" takes two expressions`)
			}
			a, err := add(l[1], path+"[1]")
			if err != nil {
				return err
			}
			b, err := add(l[2], path+"[2]")
			if err != nil {
				return err
			}
			union(a, b)
			return nil
		case "or":
			for i, r := range l[1:] {
				if err := rule(r, fmt.Sprintf("%s[%d]", path, i+1)); err != nil {
					return err
				}
			}
			return nil
		case "and":
			ands = append(ands, struct {
				raw  []any
				path string
			}{l, path})
			return nil
		}
		return engine.Fieldf(dtlPointer(path), `unsupported equality rule %s: use "eq", "or" or "and"`, exprText(l[0]))
	}
	eqs, _ := cfg["equality"].([]any)
	for i, r := range eqs {
		if err := rule(r, fmt.Sprintf("equality[%d]", i)); err != nil {
			return err
		}
	}
	sets, _ := cfg["equality_sets"].([]any)
	for i, s := range sets {
		set, _ := s.([]any)
		prev := -1
		for j, raw := range set {
			k, err := add(raw, fmt.Sprintf("equality_sets[%d][%d]", i, j))
			if err != nil {
				return err
			}
			if prev >= 0 {
				union(prev, k)
			}
			prev = k
		}
	}

	// A key space is named by the sorted texts of its expressions, so
	// that reordering rules keeps the stored keys valid.
	members := map[int][]string{}
	for i := range sides {
		r := find(i)
		members[r] = append(members[r], sides[i].text)
	}
	m.exprs = make([][]eqExpr, len(m.Datasets))
	for i, sd := range sides {
		texts := members[find(i)]
		sort.Strings(texts)
		space := "eq:" + strings.Join(texts, "\x00")
		x, err := compileMergeExpr(sd.raw, m.Aliases[sd.ds], sd.path)
		if err != nil {
			return err
		}
		m.exprs[sd.ds] = append(m.exprs[sd.ds], eqExpr{space: space, expr: x})
	}
	for _, a := range ands {
		r, err := m.compileAnd(a.raw, a.path, alias)
		if err != nil {
			return err
		}
		m.andRules = append(m.andRules, r)
	}
	return nil
}

// compileAnd compiles ["and", ["eq", A1, B1], ["eq", A2, B2], ...] where
// every conjunct relates the same two aliases: an entity of A's dataset
// has the keys (a1, a2, ...) for every combination of its values.
func (m *Merge) compileAnd(l []any, path string, alias map[string]int) (andRule, error) {
	if len(l) < 2 {
		return andRule{}, engine.Fieldf(dtlPointer(path), `"and" needs at least one ["eq", A, B]`)
	}
	r := andRule{sides: map[int][]*dtl.Expr{}}
	var pair [2]int
	var texts [2][]string
	for i, c := range l[1:] {
		cp := fmt.Sprintf("%s[%d]", path, i+1)
		eq, ok := c.([]any)
		if !ok || len(eq) != 3 || eq[0] != "eq" {
			return andRule{}, engine.Fieldf(dtlPointer(cp), `each part of "and" must be ["eq", A, B]`)
		}
		var ds [2]int
		for s := 0; s < 2; s++ {
			d, err := exprAlias(eq[s+1], alias, fmt.Sprintf("%s[%d]", cp, s+1))
			if err != nil {
				return andRule{}, err
			}
			ds[s] = d
		}
		if ds[0] == ds[1] {
			return andRule{}, engine.Fieldf(dtlPointer(cp), `each part of "and" must compare two different aliases`)
		}
		order := [2]int{0, 1}
		if i == 0 {
			pair = ds
		} else if ds[0] == pair[1] && ds[1] == pair[0] {
			order = [2]int{1, 0}
		} else if ds != pair {
			return andRule{}, engine.Fieldf(dtlPointer(cp), "every part of \"and\" must compare the aliases %q and %q", m.Aliases[pair[0]], m.Aliases[pair[1]])
		}
		for s := 0; s < 2; s++ {
			raw := eq[order[s]+1]
			x, err := compileMergeExpr(raw, m.Aliases[pair[s]], fmt.Sprintf("%s[%d]", cp, order[s]+1))
			if err != nil {
				return andRule{}, err
			}
			r.sides[pair[s]] = append(r.sides[pair[s]], x)
			text, _ := engine.AppendCanonical(nil, raw)
			texts[s] = append(texts[s], string(text))
		}
	}
	a, b := strings.Join(texts[0], "\x00"), strings.Join(texts[1], "\x00")
	if a > b {
		a, b = b, a
	}
	r.space = "and:" + a + "\x01" + b
	return r, nil
}

// exprAlias returns the dataset whose alias raw refers to; exactly one
// alias must be referred to, and no DTL variable other than "_".
func exprAlias(raw any, alias map[string]int, path string) (int, error) {
	found := map[int]bool{}
	var bad string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			head, _, ok := strings.Cut(x, ".")
			if !ok {
				return
			}
			if i, isAlias := alias[head]; isAlias {
				found[i] = true
			} else if head == "_S" || head == "_T" || head == "_R" || head == "_P" || head == "_B" {
				bad = x
			}
		case []any:
			if len(x) > 0 && (x[0] == "literal" || x[0] == "comment") {
				return
			}
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(raw)
	if bad != "" {
		return 0, engine.Fieldf(dtlPointer(path), "%q: equality expressions refer to entities by their dataset's alias (e.g. \"a.email\"), not through %s", bad, bad[:2])
	}
	if len(found) != 1 {
		var names []string
		for a := range alias {
			names = append(names, a)
		}
		sort.Strings(names)
		if len(found) == 0 {
			return 0, engine.Fieldf(dtlPointer(path), "expression %s names no dataset alias (aliases: %s)", exprText(raw), strings.Join(names, ", "))
		}
		return 0, engine.Fieldf(dtlPointer(path), "expression %s names several dataset aliases; each side of an equality rule reads one dataset", exprText(raw))
	}
	for i := range found {
		return i, nil
	}
	return 0, nil
}

// compileMergeExpr compiles an equality expression over alias: its
// "alias.path" strings become "_S.path", evaluated on the entity.
func compileMergeExpr(raw any, alias, path string) (*dtl.Expr, error) {
	x, err := dtl.CompileExpr(rewriteAlias(raw, alias), path, dtl.DefaultOptions())
	if err != nil {
		return nil, mergeFieldError(err)
	}
	if len(x.HoppedDatasets()) > 0 {
		return nil, engine.Fieldf(dtlPointer(path), "equality expressions cannot hop into other datasets")
	}
	return x, nil
}

func rewriteAlias(v any, alias string) any {
	switch x := v.(type) {
	case string:
		if rest, ok := strings.CutPrefix(x, alias+"."); ok {
			return "_S." + rest
		}
		return x
	case []any:
		if len(x) > 0 && (x[0] == "literal" || x[0] == "comment") {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = rewriteAlias(e, alias)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = rewriteAlias(e, alias)
		}
		return out
	}
	return v
}

// mergeFieldError turns a DTL compile error into a field error pointing
// at the expression ("equality[0][2][1]" becomes "/equality/0/2/1").
func mergeFieldError(err error) error {
	var de *dtl.Error
	if errors.As(err, &de) && de.Path != "" {
		return engine.Fieldf(dtlPointer(de.Path), "DTL: %v", de.Err)
	}
	return engine.Fieldf("/equality", "DTL: %v", err)
}

// SupportsSince is true: the token holds an offset per dataset.
func (m *Merge) SupportsSince() bool { return true }

// InputDatasets names the datasets merged.
func (m *Merge) InputDatasets() []string { return slices.Clone(m.Datasets) }

// Behind reports whether a dataset has versions past its offset in the
// token (engine.BehindReporter).
func (m *Merge) Behind(ctx context.Context, store engine.Store, since string) (bool, error) {
	return multiBehind(ctx, store, "merge", m.Datasets, since)
}

// Namespace is the store key-value namespace holding the pipe's merge
// indexes.
func (m *Merge) Namespace() string { return "merge:" + m.pipe }

// exprText renders a config value for error messages.
func exprText(v any) string {
	b, err := engine.AppendCanonical(nil, v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
