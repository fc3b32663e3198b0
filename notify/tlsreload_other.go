//go:build !unix

package notify

import "os"

// fileID is unavailable here; size and mtime alone detect a change.
func fileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }
