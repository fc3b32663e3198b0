// Package cestest is an in-process simulator of Oracle Retail's Credential
// Exchange Service (CES) and the OCI IAM token endpoint, shaped like
// net/http/httptest. It owns the fake remote side for tests, benchmarks and
// `cesd demo`: OAuth2 client-credentials tokens, the five CES calls, real
// wallets (JKS, PKCS#12, Oracle Net files) per generation, rotation with
// callbacks, and fault injection.
//
// It must not import the ces client or the wallet writer, so that tests of
// those packages are not circular: it builds its wallets itself.
//
// Choices worth knowing:
//   - The JSON certificateStartDate/certificateEndDate are the validity of the
//     wallet's leaf certificate (the one that rotates, lifetime
//     Options.CertValidity). Real CES derives them from the truststore
//     certificate; here the truststore holds the simulator's wallet CA, which
//     lives as long as the Server so rotations keep trust, and whose dates would
//     never move.
//   - Wallet dates and token expiry follow Options.Now; the TLS certificate of
//     the HTTPS listener follows the real clock, because clients verify it
//     against the real clock.
//   - With Options.Seed, everything that is not key material is deterministic:
//     wallet name, wallet and schema passwords, serial numbers, dates (relative
//     to Options.Now). Keys, signatures, JKS, PKCS#12 and cwallet.sso salts
//     and access tokens stay random: Go's crypto ignores caller-supplied
//     randomness for key generation and ECDSA signing.
//   - Wallets are made the way Oracle's tooling makes them (LayoutOracle, the
//     default; see EncodeOracleP12): RSA-2048 keys, one 3DES safe with a
//     secret bag, a format-'6' cwallet.sso, and an ewallet.pem whose key is
//     encrypted with the wallet password, which CES does not send. So every
//     test of cesd runs against the files real users get. Options.Layout =
//     LayoutGoPKCS12 keeps the first, cheaper layout (ECDSA, go-pkcs12).
//   - cwallet.sso is a real auto-login wallet holding the same key and
//     certificates as ewallet.p12 and keystore.jks.
//   - RSA keys come from a small per-process pool (rsaKey): generating one
//     costs up to a second under the race detector. Consecutive generations
//     of a Server still get different keys.
//   - With Options.DBListener, a TLS listener plays the database's TCPS
//     endpoint (see DBListener) and tnsnames.ora points at it.
package cestest
