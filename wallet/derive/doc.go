// Package derive computes the files cesd adds to a wallet so that common
// database clients work with it as written: a sqlnet.ora whose
// WALLET_LOCATION names the stable wallet folder instead of the
// "?/network/admin" placeholder (thick clients, ORA-28759), and an ewallet.pem
// (PKCS#8 key, client certificate, chain) for python-oracledb and
// node-oracledb in Thin mode, made from ewallet.p12 or, without the wallet
// password, from the auto-login cwallet.sso.
//
// It knows nothing of HTTP or CES: Apply works on a wallet.Payload and adds to
// Payload.Derived.
package derive
