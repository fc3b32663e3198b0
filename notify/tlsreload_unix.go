//go:build unix

package notify

import (
	"os"
	"syscall"
)

// fileID returns the device and inode of fi, so a file renamed over the
// watched path counts as a change even with the same size and mtime.
func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // field types differ by platform
	}
	return 0, 0
}
