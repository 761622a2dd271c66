// Package examples embeds Ferry's example configs and connectors, so that
// `ferry demo` runs from the binary alone: the two-way sync demo
// (two-way/, connectors/crm, connectors/erp).
package examples

import "embed"

// FS holds two-way/ and connectors/.
//
//go:embed two-way connectors
var FS embed.FS
