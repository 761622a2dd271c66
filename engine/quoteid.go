package engine

import (
	"strconv"
	"unicode/utf8"
)

// maxQuotedID is how many bytes of an _id QuoteID shows.
const maxQuotedID = 96

// QuoteID quotes an _id for an error message or a log line as %q does,
// but a long one only in part: its first bytes, then its length. Errors
// name the entity they are about, and an _id can be tens of kilobytes
// (one too long to store is, by definition): quoted whole, it would
// bury the message.
func QuoteID(id string) string {
	if len(id) <= maxQuotedID {
		return strconv.Quote(id)
	}
	// Back to the start of the character cut through, if any (at most
	// utf8.UTFMax-1 bytes: an _id that is not UTF-8 is cut where it is).
	cut := maxQuotedID
	for back := 0; back < utf8.UTFMax-1 && !utf8.RuneStart(id[cut]); back++ {
		cut--
	}
	if !utf8.RuneStart(id[cut]) {
		cut = maxQuotedID
	}
	return strconv.Quote(id[:cut]) + "… (" + strconv.Itoa(len(id)) + " bytes)"
}
