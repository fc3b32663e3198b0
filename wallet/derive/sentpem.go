package derive

import (
	"crypto/x509"
	"encoding/pem"
	"strings"

	"github.com/cesd/cesd/wallet/pkcs12"
)

// SentPEMFile is where the ewallet.pem CES sent is kept when readers cannot
// open it and a derived one takes its name.
const SentPEMFile = "ewallet.sent.pem"

// unusablePEM says why a sent ewallet.pem would not open with what the user
// configured (pemPassword, or no password when it is empty); "" means it
// opens and is kept. Current Oracle wallets encrypt its key with the wallet
// password, which CES does not send. An unencrypted key is usable only when
// no pem_password_file asks for an encrypted one. The reason holds no secret.
func unusablePEM(data []byte, pemPassword string) string {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return "holds no private key"
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY" && pemPassword == "":
			return "has its key encrypted (with the wallet password, which CES does not send) and no pem_password_file is set"
		case b.Type == "ENCRYPTED PRIVATE KEY":
			if _, err := pkcs12.DecryptPKCS8(b.Bytes, []byte(pemPassword)); err != nil {
				return "has its key encrypted with a password other than pem_password_file"
			}
			return ""
		case b.Headers["Proc-Type"] != "":
			return "has its key encrypted in OpenSSL's legacy PEM format, which cesd cannot check"
		case !parsesAsKey(b):
			return "holds a private key that does not parse"
		case pemPassword != "":
			return "has an unencrypted key, and pem_password_file asks for an encrypted one"
		}
		return ""
	}
}

func parsesAsKey(b *pem.Block) bool {
	switch b.Type {
	case "RSA PRIVATE KEY":
		_, err := x509.ParsePKCS1PrivateKey(b.Bytes)
		return err == nil
	case "EC PRIVATE KEY":
		_, err := x509.ParseECPrivateKey(b.Bytes)
		return err == nil
	}
	_, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	return err == nil
}
