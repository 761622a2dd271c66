package pipes

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrydata/ferry/engine"
)

// SetMergeChunk sets how many changed input entities a merge source
// merges together, so tests can exercise runs of several chunks.
func SetMergeChunk(src engine.Source, n int) { src.(*Merge).chunk = n }

// CheckMergeIndex verifies a merge pipe's stored indexes against each
// other: every member is in the index under each of its keys and in the
// cluster it names, every index entry and cluster lists only members that
// say so, cluster keys hash their output _id, and count matches.
func CheckMergeIndex(ctx context.Context, s engine.Store, src engine.Source) error {
	m := src.(*Merge)
	ns := m.Namespace()
	keys, err := s.ListKV(ctx, ns)
	if err != nil {
		return err
	}
	members := map[string]*mergeMember{}
	clusters := map[string]*mergeCluster{}
	index := map[string]*mergeIndexEntry{}
	count := ""
	for _, k := range keys {
		v, _, err := s.GetKV(ctx, ns, k)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(k, "m/"):
			if members[k], err = decodeMember(v); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		case strings.HasPrefix(k, "c/"):
			if clusters[k], err = decodeCluster(v); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		case strings.HasPrefix(k, "k/"):
			if index[k], err = decodeIndexEntry(v); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		case k == "count":
			count = string(v)
		}
	}
	if want := strconv.Itoa(len(members)); count != want {
		return fmt.Errorf("count %q, %s members", count, want)
	}
	for mk, mm := range members {
		h := memberHash(mm.ds, mm.id)
		if memberKey(h) != mk {
			return fmt.Errorf("member %s: key does not hash %s:%s", mk, mm.ds, mm.id)
		}
		if mm.deleted && len(mm.keys) > 0 {
			return fmt.Errorf("member %s:%s is deleted but has keys", mm.ds, mm.id)
		}
		for _, k := range mm.keys {
			e := index[eqKey(k)]
			if e == nil || !slices.Contains(e.members, h) {
				return fmt.Errorf("member %s:%s not indexed under %s", mm.ds, mm.id, eqKey(k))
			}
		}
		c := clusters[clusterKey(mm.cluster)]
		if c == nil || !slices.Contains(c.members, h) {
			return fmt.Errorf("member %s:%s not in its cluster %s", mm.ds, mm.id, clusterKey(mm.cluster))
		}
	}
	for k, e := range index {
		if len(e.members) == 0 {
			return fmt.Errorf("empty index entry %s", k)
		}
		for _, x := range e.members {
			mm := members[memberKey(x)]
			if mm == nil {
				return fmt.Errorf("index %s lists a missing member", k)
			}
			var kh h128
			hexDecode(k[2:], kh[:])
			if !slices.Contains(mm.keys, kh) {
				return fmt.Errorf("index %s lists %s:%s, which lacks the key", k, mm.ds, mm.id)
			}
		}
	}
	for k, c := range clusters {
		if clusterKey(hashString(c.id)) != k {
			return fmt.Errorf("cluster %s: key does not hash its _id %q", k, c.id)
		}
		for _, x := range c.members {
			mm := members[memberKey(x)]
			if mm == nil || clusterKey(mm.cluster) != k {
				return fmt.Errorf("cluster %q lists a member that is not in it", c.id)
			}
		}
	}
	return nil
}

func hexDecode(s string, dst []byte) { hex.Decode(dst, []byte(s)) }

// MergeMemberKey and MergeClusterKey name a member's and a cluster's
// records in a merge pipe's namespace.
func MergeMemberKey(ds, id string) string { return memberKey(memberHash(ds, id)) }

// MergeClusterKey: see MergeMemberKey.
func MergeClusterKey(id string) string { return clusterKey(hashString(id)) }

// MergeJournal lists a merge pipe's journal of outputs committed by a
// chunk the pipe has not finished (empty after every complete run).
func MergeJournal(ctx context.Context, s engine.Store, src engine.Source) ([]string, error) {
	return s.ListKV(ctx, src.(*Merge).pendingNamespace())
}
