package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// Names of the namespace, the key variable and the key file.
const (
	Namespace = "secrets"          // store key-value namespace
	KeyEnv    = "FERRY_SECRET_KEY" // environment variable holding the key
	KeyFile   = "secret.key"       // key file inside the data directory
)

// KV is the part of engine.Store that secrets are kept in.
type KV interface {
	GetKV(ctx context.Context, ns, key string) ([]byte, bool, error)
	PutKV(ctx context.Context, ns, key string, value []byte) error
	DeleteKV(ctx context.Context, ns, key string) error
	ListKV(ctx context.Context, ns string) ([]string, error)
}

// ErrNoKey is returned when secrets exist but neither FERRY_SECRET_KEY nor
// the key file is there to decrypt them.
var ErrNoKey = errors.New("no secret key: set " + KeyEnv + " or restore " + KeyFile + " in the data directory")

// ErrDecrypt is returned when a value does not authenticate under the key
// (a different key than the one it was stored with, or tampering).
var ErrDecrypt = errors.New("cannot decrypt: wrong key (" + KeyEnv + " or " + KeyFile + ") or damaged value")

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// ValidName reports whether name can be a secret name: letters, digits,
// '_', '.' and '-', not starting with '.' or '-'.
func ValidName(name string) bool { return nameRe.MatchString(name) }

// Ref names a stored secret: System is "" for a global one.
type Ref struct {
	System string `json:"system,omitempty"`
	Name   string `json:"name"`
}

// String returns "system/name" or "name".
func (r Ref) String() string {
	if r.System == "" {
		return r.Name
	}
	return r.System + "/" + r.Name
}

// Store reads and writes encrypted secrets. It is safe for concurrent use.
type Store struct {
	kv     KV
	dir    string
	getenv func(string) (string, bool)

	mu   sync.Mutex
	aead cipher.AEAD
}

// Open returns the secret store over kv. dataDir is where the key file
// lives; getenv looks up FERRY_SECRET_KEY (nil: the process environment).
// The key is read (or created) on first use, not here.
func Open(kv KV, dataDir string, getenv func(string) (string, bool)) *Store {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	return &Store{kv: kv, dir: dataDir, getenv: getenv}
}

// ParseKey decodes a 32-byte key written as 64 hex digits or as base64
// (standard or URL alphabet, with or without padding).
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if len(text) == 64 {
		if b, err := hex.DecodeString(text); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("a secret key must be 32 bytes written as 64 hex digits or as base64")
}

// cipher returns the AEAD, loading the key; with create a missing key
// file is created. It returns ErrNoKey when there is no key and !create.
func (s *Store) cipher(create bool) (cipher.AEAD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aead != nil {
		return s.aead, nil
	}
	key, err := s.loadKey(create)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	s.aead = aead
	return aead, nil
}

func (s *Store) loadKey(create bool) ([]byte, error) {
	if v, ok := s.getenv(KeyEnv); ok && v != "" {
		key, err := ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyEnv, err)
		}
		return key, nil
	}
	path := filepath.Join(s.dir, KeyFile)
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("secret key file %s is readable by others (mode %v); run chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("secret key file: %w", err)
		}
		key, err := ParseKey(string(data))
		if err != nil {
			return nil, fmt.Errorf("secret key file %s: %w", path, err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("secret key file: %w", err)
	case !create:
		return nil, ErrNoKey
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating secret key: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("secret key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating secret key file: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err2 := f.Sync(); err == nil {
		err = err2
	}
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("writing secret key file: %w", err)
	}
	return key, nil
}

func kvKey(system, name string) string {
	if system == "" {
		return name
	}
	return system + "/" + name
}

func checkRef(system, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid secret name %q (letters, digits, '_', '.' and '-')", name)
	}
	if strings.Contains(system, "/") {
		return fmt.Errorf("invalid system id %q for a secret (contains '/')", system)
	}
	return nil
}

const formatVersion = 1

// Set stores value as the secret name of system ("" for a global secret),
// replacing an earlier value. It creates the key file on first use.
func (s *Store) Set(ctx context.Context, system, name, value string) error {
	if err := checkRef(system, name); err != nil {
		return err
	}
	aead, err := s.cipher(true)
	if err != nil {
		return err
	}
	key := kvKey(system, name)
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(value)+aead.Overhead())
	out[0] = formatVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return fmt.Errorf("secret %s: nonce: %w", key, err)
	}
	out = aead.Seal(out, out[1:], []byte(value), []byte(key))
	if err := s.kv.PutKV(ctx, Namespace, key, out); err != nil {
		return fmt.Errorf("storing secret %s: %w", key, err)
	}
	return nil
}

// get decrypts one key-value entry; ok is false when it does not exist.
func (s *Store) get(ctx context.Context, key string) (string, bool, error) {
	raw, ok, err := s.kv.GetKV(ctx, Namespace, key)
	if err != nil {
		return "", false, fmt.Errorf("reading secret %s: %w", key, err)
	}
	if !ok {
		return "", false, nil
	}
	aead, err := s.cipher(false)
	if err != nil {
		return "", false, fmt.Errorf("secret %s: %w", key, err)
	}
	ns := aead.NonceSize()
	if len(raw) < 1+ns || raw[0] != formatVersion {
		return "", false, fmt.Errorf("secret %s: %w", key, ErrDecrypt)
	}
	plain, err := aead.Open(nil, raw[1:1+ns], raw[1+ns:], []byte(key))
	if err != nil {
		return "", false, fmt.Errorf("secret %s: %w", key, ErrDecrypt)
	}
	return string(plain), true, nil
}

// Get returns the secret name for system: the system's own secret when it
// has one, else the global secret of that name. ok is false when neither
// exists.
func (s *Store) Get(ctx context.Context, system, name string) (string, bool, error) {
	if err := checkRef(system, name); err != nil {
		return "", false, err
	}
	if system != "" {
		if v, ok, err := s.get(ctx, kvKey(system, name)); err != nil || ok {
			return v, ok, err
		}
	}
	return s.get(ctx, name)
}

// Delete removes one secret (system "" for a global one) and reports
// whether it existed.
func (s *Store) Delete(ctx context.Context, system, name string) (bool, error) {
	if err := checkRef(system, name); err != nil {
		return false, err
	}
	key := kvKey(system, name)
	_, ok, err := s.kv.GetKV(ctx, Namespace, key)
	if err != nil || !ok {
		return false, err
	}
	if err := s.kv.DeleteKV(ctx, Namespace, key); err != nil {
		return false, fmt.Errorf("deleting secret %s: %w", key, err)
	}
	return true, nil
}

// List returns the stored secrets' names (never values), sorted by system
// ("" first) then name.
func (s *Store) List(ctx context.Context) ([]Ref, error) {
	keys, err := s.kv.ListKV(ctx, Namespace)
	if err != nil {
		return nil, fmt.Errorf("listing secrets: %w", err)
	}
	var global, scoped []Ref
	for _, k := range keys {
		if sys, name, ok := strings.Cut(k, "/"); ok {
			scoped = append(scoped, Ref{System: sys, Name: name})
		} else {
			global = append(global, Ref{Name: k})
		}
	}
	return append(global, scoped...), nil
}

// DeleteSystem removes every secret of system and returns how many.
func (s *Store) DeleteSystem(ctx context.Context, system string) (int, error) {
	if system == "" || strings.Contains(system, "/") {
		return 0, fmt.Errorf("invalid system id %q", system)
	}
	refs, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range refs {
		if r.System != system {
			continue
		}
		if err := s.kv.DeleteKV(ctx, Namespace, r.String()); err != nil {
			return n, fmt.Errorf("deleting secret %s: %w", r, err)
		}
		n++
	}
	return n, nil
}
