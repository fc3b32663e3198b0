// Package clienttest proves, with real database clients, that a wallet cesd
// writes works: its test fetches from the CES simulator, derives and writes
// generations as cesd does, then connects node-oracledb in Thin mode,
// `openssl s_client` and `keytool` to the simulator's TCPS listener and
// stores. It has no code of its own.
//
// The node-oracledb test needs node and npm; it installs oracledb once into
// os.TempDir() and reuses it. Set CESD_SKIP_NODE=1 to skip it.
package clienttest
