// Package clienttest proves, with real database clients, that a wallet cesd
// writes works: its test builds cesd, runs `cesd fetch` against the CES
// simulator (Oracle's wallet layout: an ewallet.pem encrypted with a wallet
// password CES does not send), then connects node-oracledb and
// python-oracledb in Thin mode, `openssl s_client` and `keytool` to the
// simulator's TCPS listener and stores, before and after a rotation. It has
// no code of its own.
//
// The node-oracledb test needs node and npm; it installs oracledb once into
// os.TempDir() and reuses it. Set CESD_SKIP_NODE=1 to skip it. The
// python-oracledb test needs Debian's python3-oracledb for /usr/bin/python3.
// A missing tool skips its check, or fails it under CESD_REQUIRE_TOOLS=1.
package clienttest
