// Package wallet owns everything cesd does with a wallet on disk: validating a
// payload (file names, base64, zip archives, sizes), writing it as one atomic,
// durable generation under the layout of PRODUCT.md §5, and reading a live
// generation back (ReadManifest, Verify, Live).
//
// The on-disk layout is a contract with every reader:
//
//	<dir>/
//	  ..data -> ..<N>            swapped by rename(2)
//	  ..<N>/                     one complete generation, 0700
//	  <file> -> ..data/<file>    one stable symlink per wallet file
//	  credentials.json, schemas, manifest.json -> ..data/...
//
// A reader that needs several files must resolve ..data once (readlink) and read
// everything from that generation folder; any single file opened through its
// stable symlink is always complete. Older generations are pruned after a few
// swaps, so a reader that holds a resolved generation for long should re-resolve
// on ENOENT.
//
// The package knows nothing of HTTP or CES: callers hand it decoded data.
package wallet
