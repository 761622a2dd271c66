// Package secrets keeps encrypted secrets in a store's key-value namespace
// and resolves $SECRET(name) references in system configs.
//
// Storage: namespace "secrets" of an engine.Store; the key is "ID/name" for
// a secret of system ID and "name" for a global one. Each value is
// AES-256-GCM (standard library) with a fresh random 12-byte nonce, stored
// as version byte 1, nonce, ciphertext+tag; the key-value key is the
// additional authenticated data, so a value copied to another name does not
// decrypt.
//
// The 32-byte key comes from the environment variable FERRY_SECRET_KEY (64
// hex digits, or base64 in standard or URL alphabet, padded or not) or else
// from the file DATA/secret.key (the same text), created with mode 0600 by
// the first Set. A key file readable by group or others is refused. Losing
// the key loses the secrets; a wrong key is reported as such, never
// silently.
//
// Resolution: $SECRET(name) in a system config is looked up as the system's
// own secret first, then as a global one. $SECRET in a pipe is an error
// naming the pipe and pointer; an unknown secret is an error naming the
// system and the secret, never a value. Values that end up in diagnostics
// are redacted (Redactor).
package secrets
