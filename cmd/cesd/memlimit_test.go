package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		env   map[string]string
		want  int64 // 0: no limit set
	}{
		{name: "v2 container, own cgroup at the mount root", files: map[string]string{
			"proc/self/cgroup":         "0::/kubepods/burstable/pod1/c1\n",
			"sys/fs/cgroup/memory.max": "67108864\n",
		}, want: 48 << 20},
		{name: "v2 host, smallest on the way up", files: map[string]string{
			"proc/self/cgroup": "0::/system.slice/cesd.service\n",
			"sys/fs/cgroup/system.slice/cesd.service/memory.max": "max\n",
			"sys/fs/cgroup/system.slice/memory.max":              "134217728\n",
		}, want: 96 << 20},
		{name: "v2 unlimited", files: map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		}},
		{name: "v1", files: map[string]string{
			"proc/self/cgroup": "4:memory:/docker/abc\n1:cpu:/docker/abc\n0::/\n",
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "67108864",
		}, want: 48 << 20},
		{name: "v1 unlimited", files: map[string]string{
			"proc/self/cgroup":                           "4:cpuacct,memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
		}},
		{name: "GOMEMLIMIT wins", env: map[string]string{"GOMEMLIMIT": "30MiB"}, files: map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "67108864\n",
		}},
		{name: "no cgroup file"},
		{name: "garbage", files: map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "lots\n",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := memoryLimit(envMap(tc.env), os.ReadFile, root)
			if ok != (tc.want != 0) || got != tc.want {
				t.Errorf("memoryLimit = %d, %v; want %d", got, ok, tc.want)
			}
		})
	}
}
