// Package dtl compiles and runs a subset of Sesam's Data Transformation
// Language (DTL), so that the "type": "dtl" transforms in public Sesam
// connectors run unchanged inside Ferry.
//
// The package owns the DTL value model, the compiler from a decoded "rules"
// object to an immutable [Program], the interpreter that applies a Program to
// one source entity, and the bookkeeping used by `ferry compat`
// ([Functions], [UsedFunctions]). It does no I/O of its own: joins ("hops")
// go through the [Hopper] interface that the integrator implements on the
// dataset store.
//
// # Value model
//
// Like Sesam, every expression evaluates to a sequence of values (a
// "multi-value"). A path such as "_S.orders.amount" yields one element per
// value found, spreading JSON lists on the way, and drops missing and null
// values. When a multi-value is stored (add, dict values, list elements,
// map results) it is unwrapped: no element becomes null, one element becomes
// that element, several stay a list. Values are the encoding/json-with-UseNumber
// types (nil, bool, json.Number, string, []any, map[string]any); numbers
// stay exact (math/big where arithmetic or comparison needs it). Datetimes and
// namespaced identifiers travel as transit strings ("~t2023-01-30T12:00:01Z",
// "~:ns:id").
//
// See README.md for the list of supported functions and the deviations from
// Sesam.
package dtl
