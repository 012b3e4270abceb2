package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// sealVersion prefixes every sealed blob so a future format can be told
// apart.
const sealVersion byte = 1

// Sealer encrypts credentials at rest with AES-256-GCM. The protection id is
// the associated data, so a blob copied onto another row does not open.
// It may hold several keys to rotate them: the first seals, every one opens.
type Sealer struct {
	aead      cipher.AEAD
	digestKey []byte
	// older are the keys that still open what they sealed, newest first.
	older []*Sealer
}

// NewSealer returns a Sealer that seals with key and also opens what the
// older keys sealed (each 32 bytes).
func NewSealer(key []byte, older ...[]byte) (*Sealer, error) {
	s, err := newSingleSealer(key)
	if err != nil {
		return nil, err
	}
	for i, k := range older {
		o, err := newSingleSealer(k)
		if err != nil {
			return nil, fmt.Errorf("older key %d: %w", i+1, err)
		}
		s.older = append(s.older, o)
	}
	return s, nil
}

func newSingleSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("credentials key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("error creating cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("error creating GCM: %w", err)
	}
	// A separate key for digests, so a digest never reveals anything about the
	// encryption key and the two uses cannot be confused.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("mcpguard request digest v1"))
	return &Sealer{aead: aead, digestKey: mac.Sum(nil)}, nil
}

// ParseSealerKey returns a Sealer for the form of MCPGUARD_CREDENTIALS_KEY:
// the base64 of a 32-byte key, or several separated by commas (the first
// seals, all open). Its errors name the key by position, never its value.
func ParseSealerKey(list string) (*Sealer, error) {
	var keys [][]byte
	for i, b64 := range strings.Split(list, ",") {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("credentials key %d is not valid base64", i+1)
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("credentials key %d is %d bytes, not 32", i+1, len(key))
		}
		keys = append(keys, key)
	}
	return NewSealer(keys[0], keys[1:]...)
}

// Keys is how many keys the Sealer holds.
func (s *Sealer) Keys() int { return 1 + len(s.older) }

// Seal encrypts plaintext for the row id with a fresh random nonce.
func (s *Sealer) Seal(id string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("error reading nonce: %w", err)
	}
	out := append([]byte{sealVersion}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, []byte(id)), nil
}

// Open decrypts a blob sealed for the row id by any of the keys. It fails
// for an unknown key or another id; the error never includes the blob.
func (s *Sealer) Open(id string, sealed []byte) ([]byte, error) {
	plain, _, err := s.OpenCurrent(id, sealed)
	return plain, err
}

// OpenCurrent is Open that also reports whether the first key sealed the
// blob, i.e. whether re-sealing it would change its key.
func (s *Sealer) OpenCurrent(id string, sealed []byte) (plain []byte, current bool, err error) {
	plain, err = s.openOne(id, sealed)
	if err == nil {
		return plain, true, nil
	}
	for _, o := range s.older {
		if p, oerr := o.openOne(id, sealed); oerr == nil {
			return p, false, nil
		}
	}
	return nil, false, err
}

func (s *Sealer) openOne(id string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("sealed credentials are malformed")
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(id))
	if err != nil {
		return nil, errors.New("sealed credentials do not open with any configured key for this protection")
	}
	return plain, nil
}

// Digest is a keyed HMAC-SHA256 of data under a key derived from the
// first credentials key: it identifies a request body (credentials
// included) without revealing it.
func (s *Sealer) Digest(data []byte) []byte {
	mac := hmac.New(sha256.New, s.digestKey)
	mac.Write(data)
	return mac.Sum(nil)
}

// OlderDigests are data's digests under the older keys, so a body hashed
// before a rotation is still recognised while its key is configured.
func (s *Sealer) OlderDigests(data []byte) [][]byte {
	var out [][]byte
	for _, o := range s.older {
		out = append(out, o.Digest(data))
	}
	return out
}
