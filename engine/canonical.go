package engine

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/zeebo/xxh3"
)

// AppendCanonical appends the canonical JSON text of v to dst: object keys
// sorted by byte order, no insignificant white space, numbers exactly as
// written (json.Number), strings escaped minimally (", \ and control
// characters; no HTML escaping). Two values are equal as JSON data iff their
// canonical texts are equal, which is what _hash relies on.
//
// Besides the decoded value model it accepts the number types other
// interpreters produce (int, int64, float64, *big.Int), so transform output
// can be written without a conversion pass.
func AppendCanonical(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		if x {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case json.Number:
		if x == "" {
			return append(dst, '0'), nil
		}
		return append(dst, x...), nil
	case string:
		return appendString(dst, x), nil
	case map[string]any:
		return appendObject(dst, x, false)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = AppendCanonical(dst, e); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case float64:
		return appendFloat(dst, x), nil
	case *big.Int:
		return x.Append(dst, 10), nil
	case []map[string]any:
		a := make([]any, len(x))
		for i := range x {
			a[i] = x[i]
		}
		return AppendCanonical(dst, a)
	default:
		return dst, fmt.Errorf("cannot encode %T as JSON", v)
	}
}

// appendObject writes m with sorted keys. With stripReserved, root keys
// starting with "_" are left out except _id, and _deleted when it is true.
func appendObject(dst []byte, m map[string]any, stripReserved bool) ([]byte, error) {
	var stack [32]string
	keys := stack[:0]
	for k, v := range m {
		if stripReserved && len(k) > 0 && k[0] == '_' && k != "_id" {
			if k != "_deleted" || v != true {
				continue
			}
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		var err error
		if dst, err = AppendCanonical(dst, m[k]); err != nil {
			return dst, fmt.Errorf("key %q: %w", k, err)
		}
	}
	return append(dst, '}'), nil
}

// appendFloat formats like encoding/json does; NaN and infinities, which
// JSON cannot represent, become null.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e17 {
		return strconv.AppendInt(dst, int64(f), 10)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Like encoding/json: "1e-07" becomes "1e-7".
		b := dst[start:]
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string in the canonical form (the
// escapes AppendCanonical uses).
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

// AppendStringBytes is AppendString for a string held as bytes; printable
// ASCII without quotes or backslashes (most keys) is copied as it is.
func AppendStringBytes(dst []byte, b []byte) []byte {
	for _, c := range b {
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			return appendString(dst, string(b))
		}
	}
	dst = append(dst, '"')
	dst = append(dst, b...)
	return append(dst, '"')
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			if c < utf8.RuneSelf {
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, "\ufffd"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Hash is the 128-bit content hash of an entity version.
type Hash [16]byte

// String renders the hash as 32 lower-case hex digits, the form _hash takes.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Prepared is an entity ready to be written: its _id, deleted flag, the
// canonical JSON of its stored content and the hash of that content.
type Prepared struct {
	ID      string
	Deleted bool
	// Body is the canonical JSON of the entity without reserved root keys
	// other than _id and (when true) _deleted. It is what the store keeps.
	Body []byte
	Hash Hash
	// Filtered is set for entities a DTL filter rejected ("_filtered":
	// true): a dataset sink deletes the live entity, other sinks drop it.
	Filtered bool
	// KnownNew is a writer's promise that the _id has no version in the
	// dataset yet, so the store may skip looking it up. Only set it when
	// that is certain (e.g. the dataset was empty when the run started and
	// the run has not produced the _id before).
	KnownNew bool
	// RawHash is a 64-bit hash of the JSON text the entity was prepared
	// from, when it came as text (see RawTextHash); 0 means unknown. The
	// store keeps it with the _id so that the same text arriving again is
	// known unchanged without being canonicalized.
	RawHash uint64
	// Lazy marks a Prepared that only has ID, Raw and RawHash: the text
	// has not been canonicalized because it is probably unchanged. A sink
	// that accepts lazy values (LazySinkRun) asks the store whether the
	// text is the same as the latest version's (WriteTx.SameRaw) and calls
	// Resolve when it is not.
	Lazy bool
	// Raw is the JSON text of a lazy Prepared.
	Raw []byte
	// SameIn is set on a lazy Prepared by a read view (RawViewer) that
	// found the latest version live and written from the same text, to
	// the mark of the state it saw. The committer confirms it with
	// ViewConfirmer.UnchangedSince instead of looking the _id up again.
	SameIn ViewMark
	// Seen, when SeenIn is set, is what a read view found for the _id of
	// a lazy Prepared whose text had changed: the store's index entry for
	// it (nil: the _id had no version), as of the state SeenIn names. A
	// store may write the new version against it instead of looking the
	// _id up again, once it has confirmed that nothing was written to the
	// _id since (ViewConfirmer.UnchangedSince).
	Seen   []byte
	SeenIn ViewMark
}

// Resolve computes the stored form of a lazy Prepared from its text,
// keeping RawHash and what a view saw (Seen, SeenIn). It does nothing to
// a Prepared that is not lazy.
func (p *Prepared) Resolve() error {
	if !p.Lazy {
		return nil
	}
	q, _, err := PrepareRaw(nil, p.Raw)
	if err != nil {
		return err
	}
	q.RawHash, q.Seen, q.SeenIn = p.RawHash, p.Seen, p.SeenIn
	*p = q
	return nil
}

// Prepare computes the stored form of e. Root keys starting with "_" other
// than _id and _deleted are dropped; "_deleted": false is the same as no
// _deleted. The hash is xxh3-128 over Body: it only ever compares versions
// of one entity, so a fast non-cryptographic 128-bit hash is enough (the
// chance of two versions colliding is ~2^-64 after 2^32 versions of one id).
func Prepare(e Entity) (Prepared, error) {
	p, _, err := PrepareAppend(nil, e)
	return p, err
}

// PrepareAppend is Prepare writing Body into arena (appending) so a batch
// shares one allocation. It returns the grown arena; bodies of earlier
// calls stay valid even when the arena is reallocated.
func PrepareAppend(arena []byte, e Entity) (Prepared, []byte, error) {
	id, ok := e["_id"].(string)
	if !ok || id == "" {
		if _, present := e["_id"]; !present {
			return Prepared{}, arena, ErrNoID
		}
		return Prepared{}, arena, fmt.Errorf("entity _id is %s, not a non-empty string", TypeName(e["_id"]))
	}
	start := len(arena)
	arena, err := appendObject(arena, e, true)
	if err != nil {
		return Prepared{}, arena[:start], fmt.Errorf("entity %s: %w", QuoteID(id), err)
	}
	body := arena[start:len(arena):len(arena)]
	filtered, _ := e["_filtered"].(bool)
	return Prepared{ID: id, Deleted: IsDeleted(e), Body: body, Hash: HashBytes(body), Filtered: filtered}, arena, nil
}

// HashBytes is the hash function used for _hash.
func HashBytes(b []byte) Hash {
	return Hash(xxh3.Hash128(b).Bytes())
}
