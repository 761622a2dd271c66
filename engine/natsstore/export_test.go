package natsstore

import "context"

// SetAfterAppend makes commits run fn between their appends and their
// metadata batch; an error from fn ends the commit there, as a crash
// would.
func SetAfterAppend(s *Store, fn func() error) { s.afterAppend = fn }

// KillSession makes the store's session look dead to others (as if its
// worker record expired) without the store noticing.
func KillSession(s *Store) error {
	sess := s.sess.Load()
	_, err := s.js.PublishMsg(context.Background(), tombstone(s.n.worker(sess.id), 0))
	return err
}

// SessionID is the store's current session.
func SessionID(s *Store) string { return s.sess.Load().id }

// DatasetStream is the name of a dataset's stream.
func DatasetStream(s *Store, ds string) string { return s.n.dsStream(ds) }

// MetaStream is the name of the metadata stream.
func MetaStream(s *Store) string { return s.n.metaStream() }

// Holes returns a dataset's holes.
func Holes(s *Store, ds string) ([][2]uint64, error) {
	m, _, _, err := s.readMeta(context.Background(), ds)
	var out [][2]uint64
	for _, h := range m.Holes {
		out = append(out, [2]uint64{h.From, h.To})
	}
	return out, err
}
