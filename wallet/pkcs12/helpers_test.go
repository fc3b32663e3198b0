package pkcs12

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"testing"
)

// desHeader builds an old-style type '5' cwallet.sso header for password.
func desHeader(t testing.TB, password []byte) []byte {
	t.Helper()
	key := make([]byte, 8)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	block, err := des.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	plain := append([]byte(nil), password...)
	pad := 24 - len(plain)
	if pad <= 0 || pad > 8 {
		t.Fatalf("password of %d bytes does not fit a DES header", len(plain))
	}
	for range pad {
		plain = append(plain, byte(pad))
	}
	enc := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, make([]byte, 8)).CryptBlocks(enc, plain)
	h := []byte{0xa1, 0xf8, 0x4e, '6'}
	h = binary.BigEndian.AppendUint32(h, 6)
	h = binary.BigEndian.AppendUint32(h, 1+16+48)
	h = append(h, '5')
	h = append(h, hex.EncodeToString(key)...)
	return append(h, hex.EncodeToString(enc)...)
}
