package engine

import (
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// RunObserver is told when runs and receives start and finish (see
// Engine.Observer). The HTTP API's metrics implement it.
type RunObserver interface {
	// RunStarted is called once the run holds the pipe's lock.
	RunStarted(p *Pipe)
	// RunFinished is called with the record as it was stored (its error
	// redacted), after the record was written.
	RunFinished(p *Pipe, rec RunRecord)
}

// Counts calls fn with every counter of the run record, so that reports
// and metrics pick up counters added to RunRecord without naming each:
// every integer field, by its JSON name ("read", "written", ...), with key
// ""; every map of integers (counts per reason), once per entry with the
// entry's key; the fields of a nested struct (not a time) with their JSON
// names prefixed by the struct's and "_", of an embedded struct without a
// prefix. Seq (the store's sequence number) and fields tagged `json:"-"`
// are not counters. Order: field order, map keys sorted.
func (r *RunRecord) Counts(fn func(name, key string, n int64)) {
	runCountFieldsOnce.Do(func() { runCountFields = countFields(reflect.TypeFor[RunRecord](), nil, "") })
	v := reflect.ValueOf(r).Elem()
	for _, f := range runCountFields {
		fv := v.FieldByIndex(f.index)
		switch {
		case fv.CanInt():
			fn(f.name, "", fv.Int())
		case fv.CanUint():
			fn(f.name, "", int64(fv.Uint()))
		case fv.Kind() == reflect.Map:
			keys := fv.MapKeys()
			strs := make([]string, len(keys))
			for i, k := range keys {
				strs[i] = k.String()
			}
			slices.Sort(strs)
			for _, k := range strs {
				e := fv.MapIndex(reflect.ValueOf(k).Convert(fv.Type().Key()))
				if e.CanInt() {
					fn(f.name, k, e.Int())
				} else {
					fn(f.name, k, int64(e.Uint()))
				}
			}
		}
	}
}

type countField struct {
	name  string
	index []int
}

var (
	runCountFieldsOnce sync.Once
	runCountFields     []countField
)

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func countFields(t reflect.Type, index []int, prefix string) []countField {
	var out []countField
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		idx := append(append([]int(nil), index...), i)
		ft := sf.Type
		switch {
		case prefix == "" && name == "seq":
		case isInt(ft.Kind()):
			out = append(out, countField{prefix + name, idx})
		case ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String && isInt(ft.Elem().Kind()):
			out = append(out, countField{prefix + name, idx})
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]():
			p := prefix + name + "_"
			if sf.Anonymous {
				p = prefix
			}
			out = append(out, countFields(ft, idx, p)...)
		}
	}
	return out
}
