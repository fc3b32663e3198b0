//go:build kube

package fleet_test

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/deploy/internal/fieldtest"
)

// BenchmarkFleetIdleRSS measures the footprint of the fleet build as it
// runs: two `cesd run` replicas against the real apiserver, one leading
// (in Secret-only mode, as shipped: its wallet staged in a private folder
// and written to the Secret) and one following. It
// samples each replica's resident memory at points of an idle period
// (CESD_FLEET_IDLE, default 3m: the Go scavenger returns freed heap to the
// kernel over minutes, so a figure taken a second after start says little),
// and reports the last sample (PRODUCT.md §8: idle RSS ≤ 20 MiB).
//
//	CESD_KUBE_APISERVER=$(scripts/kube-apiserver.sh) \
//	  go test -tags kube -run '^$' -bench FleetIdleRSS -benchtime 1x -v -timeout 15m ./deploy/kubernetes/fleet
func BenchmarkFleetIdleRSS(b *testing.B) {
	idle := 3 * time.Minute
	if v := os.Getenv("CESD_FLEET_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("CESD_FLEET_IDLE: %v", err)
		}
		idle = d
	}
	k, _, token := startFleetNamespace(b)
	work := b.TempDir()
	kubeconfig := k.kubeconfig(b, work, token)
	bin := fieldtest.BuildCesd(b, work, "fleet")
	sim, _ := startSim(b, work)
	reps := []*replica{}
	for _, id := range []string{"cesd-a", "cesd-b"} {
		reps = append(reps, startReplica(b, bin, work, id, kubeconfig, sim))
	}
	var lead, follow *replica
	fieldtest.Wait(b, time.Minute, "one replica leads and has written the Secret", func() (bool, string) {
		lead, follow = nil, nil
		for _, r := range reps {
			fams, err := fieldtest.Metrics(r.metrics)
			if err != nil {
				return false, err.Error()
			}
			switch {
			case fieldtest.Sum(fams, "cesd_leader", nil) == 1 && fieldtest.Sum(fams, "cesd_generation", nil) >= 1:
				lead = r
			case fieldtest.Sum(fams, "cesd_leader", nil) == 0:
				follow = r
			}
		}
		return lead != nil && follow != nil, "no leader with a generation yet"
	})
	b.ResetTimer()
	start := time.Now()
	var last map[string]float64
	for _, at := range []time.Duration{5 * time.Second, time.Minute, 3 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
		if at > idle {
			at = idle
		}
		time.Sleep(time.Until(start.Add(at)))
		last = map[string]float64{}
		for role, r := range map[string]*replica{"leader": lead, "follower": follow} {
			f := footprint(b, r)
			b.Logf("%-8s after %5s: VmRSS %5.1f MiB (anon %5.1f, file %4.1f); Go heap in use %5.1f MiB, free not returned %4.1f MiB, returned %4.1f MiB, stacks %4.1f MiB, sys %5.1f MiB",
				role, at, f["VmRSS"], f["RssAnon"], f["RssFile"], f["heap_inuse"], f["heap_idle"]-f["heap_released"], f["heap_released"], f["stack_inuse"], f["sys"])
			last[role+"-rss-MiB"] = f["VmRSS"]
		}
		if at == idle {
			break
		}
	}
	for unit, v := range last {
		b.ReportMetric(v, unit)
	}
	// Where the resident memory is: the binary's image by ELF section, and
	// how much of the image and of the anonymous memory the replica touches
	// in a minute of idling (the accessed bits cleared through clear_refs,
	// then smaps' Referenced).
	for role, r := range map[string]*replica{"leader": lead, "follower": follow} {
		res := imageResidency(b, r.cmd.Process.Pid, bin)
		b.Logf("%-8s image resident by section: .text %.1f MiB, .rodata %.1f MiB, .gopclntab %.1f MiB, other %.1f MiB",
			role, res[".text"], res[".rodata"], res[".gopclntab"], res["other"])
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", r.cmd.Process.Pid), []byte("1"), 0); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(time.Minute)
	for role, r := range map[string]*replica{"leader": lead, "follower": follow} {
		rss, ref := referenced(b, r.cmd.Process.Pid, bin)
		b.Logf("%-8s touched in 1m idle: image %.1f of %.1f MiB resident, anonymous %.1f of %.1f MiB; peak RSS since start (VmHWM) %.1f MiB",
			role, ref["image"], rss["image"], ref["anon"], rss["anon"], footprint(b, r)["VmHWM"])
	}
	for _, r := range reps {
		if r.exited() {
			b.Fatalf("%s exited during the idle period:\n%s", r.id, tail([]byte(r.log.String()), 3000))
		}
	}
}

// footprint is a replica's memory in MiB: the kernel's view from
// /proc/<pid>/status and the Go runtime's from its /metrics.
func footprint(b *testing.B, r *replica) map[string]float64 {
	b.Helper()
	f := map[string]float64{}
	st, err := os.Open(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		name, rest, _ := strings.Cut(sc.Text(), ":")
		if fields := strings.Fields(rest); len(fields) == 2 && fields[1] == "kB" {
			kb, _ := strconv.ParseFloat(fields[0], 64)
			f[name] = kb / 1024
		}
	}
	fams, err := fieldtest.Metrics(r.metrics)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []string{"heap_inuse", "heap_idle", "heap_released", "stack_inuse", "sys"} {
		f[m] = fieldtest.Sum(fams, "go_memstats_"+m+"_bytes", nil) / (1 << 20)
	}
	return f
}

// imageResidency is, in MiB, how much of each loaded section of the binary
// bin is resident in pid's page tables (/proc/<pid>/pagemap: bit 63 of a
// page's entry is "present"). cesd is a static, non-PIE binary: its
// sections sit at their link addresses.
func imageResidency(b *testing.B, pid int, bin string) map[string]float64 {
	b.Helper()
	exe, err := elf.Open(bin)
	if err != nil {
		b.Fatal(err)
	}
	defer exe.Close()
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer pm.Close()
	const page = 4096
	res := map[string]float64{}
	for _, sec := range exe.Sections {
		if sec.Flags&elf.SHF_ALLOC == 0 || sec.Type == elf.SHT_NOBITS || sec.Size == 0 {
			continue
		}
		first, end := sec.Addr/page, (sec.Addr+sec.Size+page-1)/page
		entries := make([]byte, (end-first)*8)
		if _, err := pm.ReadAt(entries, int64(first*8)); err != nil {
			b.Fatalf("pagemap: %v", err)
		}
		name := sec.Name
		if name != ".text" && name != ".rodata" && name != ".gopclntab" {
			name = "other"
		}
		for i := 0; i < len(entries); i += 8 {
			if binary.LittleEndian.Uint64(entries[i:])&(1<<63) != 0 {
				res[name] += page / float64(1<<20)
			}
		}
	}
	return res
}

// referenced sums smaps' Rss and Referenced, in MiB, over the mappings of
// the binary bin ("image") and all others ("anon").
func referenced(b *testing.B, pid int, bin string) (rss, ref map[string]float64) {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rss, ref = map[string]float64{}, map[string]float64{}
	kind := "anon"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			kind = "anon"
			if len(fields) == 6 && fields[5] == bin {
				kind = "image"
			}
		case len(fields) == 3 && fields[0] == "Rss:":
			kb, _ := strconv.ParseFloat(fields[1], 64)
			rss[kind] += kb / 1024
		case len(fields) == 3 && fields[0] == "Referenced:":
			kb, _ := strconv.ParseFloat(fields[1], 64)
			ref[kind] += kb / 1024
		}
	}
	return rss, ref
}
