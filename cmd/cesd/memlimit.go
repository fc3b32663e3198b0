package main

import (
	"path"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of the container's memory the Go heap is
// steered to: 48 MiB of the shipped 64 MiB, leaving room for stacks, the
// binary and a memory-backed wallet folder.
const memoryLimitShare = 0.75

// memoryLimit returns the soft limit main gives debug.SetMemoryLimit, so
// that the garbage collector works harder before the kernel OOM-kills cesd:
// 3/4 of the smallest memory limit on the way from this process's cgroup to
// the root (cgroup v2 memory.max, or v1 memory.limit_in_bytes). It returns
// false when GOMEMLIMIT is set (the runtime already honours it) or no limit
// is found. readFile is os.ReadFile; root is "/" outside tests.
func memoryLimit(env envFunc, readFile func(string) ([]byte, error), root string) (int64, bool) {
	if v, ok := env("GOMEMLIMIT"); ok && v != "" {
		return 0, false
	}
	self, err := readFile(path.Join(root, "proc/self/cgroup"))
	if err != nil {
		return 0, false
	}
	best := int64(-1)
	consider := func(dir, file string) {
		for d := dir; ; d = path.Dir(d) {
			if n, ok := readLimit(readFile, path.Join(d, file)); ok && (best < 0 || n < best) {
				best = n
			}
			if d == path.Dir(d) || !strings.HasPrefix(path.Dir(d), path.Join(root, "sys/fs/cgroup")) {
				return
			}
		}
	}
	for _, line := range strings.Split(string(self), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "": // v2, unified
			consider(path.Join(root, "sys/fs/cgroup", parts[2]), "memory.max")
			consider(path.Join(root, "sys/fs/cgroup/unified", parts[2]), "memory.max")
		case hasController(parts[1], "memory"): // v1
			consider(path.Join(root, "sys/fs/cgroup/memory", parts[2]), "memory.limit_in_bytes")
		}
	}
	if best <= 0 {
		return 0, false
	}
	return int64(float64(best) * memoryLimitShare), true
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// readLimit reads one limit file; "max" and v1's near-2^63 "unlimited" are
// no limit.
func readLimit(readFile func(string) ([]byte, error), file string) (int64, bool) {
	b, err := readFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0, false
	}
	return n, true
}
