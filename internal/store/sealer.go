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
)

// sealVersion prefixes every sealed blob so a future key rotation can tell
// formats apart.
const sealVersion byte = 1

// Sealer encrypts credentials at rest with AES-256-GCM. The protection id is
// the associated data, so a blob copied onto another row does not open.
type Sealer struct {
	aead      cipher.AEAD
	digestKey []byte
}

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
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

// ParseSealerKey returns a Sealer for the base64 encoding of a 32-byte key,
// the form of MCPGUARD_CREDENTIALS_KEY.
func ParseSealerKey(b64 string) (*Sealer, error) {
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("credentials key is not valid base64")
	}
	return NewSealer(key)
}

// Seal encrypts plaintext for the row id with a fresh random nonce.
func (s *Sealer) Seal(id string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("error reading nonce: %w", err)
	}
	out := append([]byte{sealVersion}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, []byte(id)), nil
}

// Open decrypts a blob sealed for the row id. It fails for another key or
// another id; the error never includes the blob.
func (s *Sealer) Open(id string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("sealed credentials are malformed")
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(id))
	if err != nil {
		return nil, errors.New("sealed credentials do not open with this key for this protection")
	}
	return plain, nil
}

// Digest is a keyed HMAC-SHA256 of data under a key derived from the
// credentials key: it identifies a request body (credentials included)
// without revealing it.
func (s *Sealer) Digest(data []byte) []byte {
	mac := hmac.New(sha256.New, s.digestKey)
	mac.Write(data)
	return mac.Sum(nil)
}
