// Package pkcs12 reads the PKCS#12 (RFC 7292) files of Oracle wallets:
// ewallet.p12, and the PFX inside the auto-login cwallet.sso, which it
// unwraps. It returns every private key and certificate, whatever the bag
// order, from Oracle's layout (one encrypted safe holding the key, the
// certificates and secret bags) as well as from the two-safe layout OpenSSL
// and go-pkcs12 write. It only reads.
//
// It exists beside go-pkcs12 because the PFX inside cwallet.sso is keyed by
// raw bytes rather than a text password, and because go-pkcs12 expects
// exactly two safes, one key and one chain. MACs are not checked: a wrong
// password fails decryption instead (ErrIncorrectPassword).
package pkcs12
