package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrydata/ferry/engine"
)

// TestPageSize: a new data file gets 16 KiB pages (or the OS page size if
// larger); a file made with another page size keeps it and still works.
func TestPageSize(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.db.Info().PageSize, max(16<<10, os.Getpagesize()); got != want {
		t.Errorf("new file: page size %d, want %d", got, want)
	}
	s.Close()

	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err = Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.db.Info().PageSize; got != 4096 {
		t.Errorf("existing file: page size %d, want 4096 as made", got)
	}
	tx, err := s.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		p, err := engine.Prepare(engine.Entity{"_id": fmt.Sprintf("e%d", i), "v": json.Number("1")})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tx.Put("ds", &p, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("check of a file with 4 KiB pages: %v", err)
	}
}
