package pkcs12

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Oracle does not document cwallet.sso. Its layout, as read by the go-ora
// driver (github.com/sijms/go-ora/v2 configurations/wallet.go, v2.8.24, which
// connects to Autonomous Database with CES-style wallets), is a short header
// that carries, obfuscated, the password of a PKCS#12 file that follows it:
//
//	a1 f8 4e                 magic
//	'6' | '7' | '8'          format; '8' is auto_login_local (bound to host and user)
//	uint32 BE = 6            header version
//	uint32 BE n              length of what follows, up to the PKCS#12
//	0x06, key[16], enc[n-17] AES-128-CBC, fixed IV, no padding: enc -> password
//	 or '5', hex(key)[16], hex(enc)[48]  single DES-CBC, zero IV, PKCS#5 padding (old wallets)
//	PFX (DER)                the wallet, keyed by the password bytes
//
// The obfuscation is a fixed, public scheme, not encryption: anyone who can
// read cwallet.sso holds the key, which is why it must stay 0600.

var ssoMagic = []byte{0xa1, 0xf8, 0x4e}

// ssoIV is the fixed AES IV of format-6 headers.
var ssoIV = []byte{192, 52, 216, 49, 28, 2, 206, 248, 81, 240, 20, 75, 129, 237, 75, 242}

// ErrLocalAutoLogin is returned for an auto_login_local wallet: its password is
// bound to the host and user that created it, so cesd cannot open it.
var ErrLocalAutoLogin = errors.New("cwallet.sso is an auto_login_local wallet, which only opens on the host that made it")

// ssoPassword splits an auto-login wallet into the PKCS#12 password and the
// PKCS#12 file.
func ssoPassword(sso []byte) (password, pfx []byte, err error) {
	if len(sso) < 13 || !bytes.Equal(sso[:3], ssoMagic) {
		return nil, nil, errors.New("cwallet.sso: not an Oracle auto-login wallet (bad magic)")
	}
	switch sso[3] {
	case '6', '7':
	case '8':
		return nil, nil, ErrLocalAutoLogin
	default:
		return nil, nil, fmt.Errorf("cwallet.sso: unknown format %#x", sso[3])
	}
	if v := binary.BigEndian.Uint32(sso[4:8]); v != 6 {
		return nil, nil, fmt.Errorf("cwallet.sso: unknown header version %d", v)
	}
	n := int(binary.BigEndian.Uint32(sso[8:12]))
	rest := sso[12:]
	switch rest[0] {
	case 0x06:
		encLen := n - 17
		if n < 17 || len(rest) < n || encLen == 0 || encLen%aes.BlockSize != 0 {
			return nil, nil, errors.New("cwallet.sso: truncated or malformed header")
		}
		block, err := aes.NewCipher(rest[1:17])
		if err != nil {
			return nil, nil, fmt.Errorf("cwallet.sso: %w", err)
		}
		password = make([]byte, encLen)
		cipher.NewCBCDecrypter(block, ssoIV).CryptBlocks(password, rest[17:n])
		return password, rest[n:], nil
	case '5':
		const keyHex, encHex = 16, 48
		if len(rest) < 1+keyHex+encHex {
			return nil, nil, errors.New("cwallet.sso: truncated header")
		}
		key, err := hex.DecodeString(string(rest[1 : 1+keyHex]))
		if err != nil {
			return nil, nil, fmt.Errorf("cwallet.sso: header key: %w", err)
		}
		enc, err := hex.DecodeString(string(rest[1+keyHex : 1+keyHex+encHex]))
		if err != nil {
			return nil, nil, fmt.Errorf("cwallet.sso: header: %w", err)
		}
		block, err := des.NewCipher(key)
		if err != nil {
			return nil, nil, fmt.Errorf("cwallet.sso: %w", err)
		}
		password = make([]byte, len(enc))
		cipher.NewCBCDecrypter(block, make([]byte, des.BlockSize)).CryptBlocks(password, enc)
		if p := int(password[len(password)-1]); p >= 1 && p <= des.BlockSize &&
			bytes.Equal(password[len(password)-p:], bytes.Repeat([]byte{byte(p)}, p)) {
			password = password[:len(password)-p]
		}
		return password, rest[1+keyHex+encHex:], nil
	default:
		return nil, nil, fmt.Errorf("cwallet.sso: unknown header type %#x", rest[0])
	}
}

// DecodeSSO returns the keys and certificates of an auto-login wallet.
func DecodeSSO(sso []byte) (*Contents, error) {
	password, pfx, err := ssoPassword(sso)
	if err != nil {
		return nil, err
	}
	c, err := Decode(pfx, password)
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	return c, nil
}
