package daemon

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/daemon/trigger"
)

// TestEverySeriesExistsFromStart: alerts and the dashboard work before the
// first refresh, error or callback, so a fresh daemon exports every label
// value of its refresh counters, at 0.
func TestEverySeriesExistsFromStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{WalletDir: t.TempDir()}, Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, &fakeWriter{}), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{} // family -> "label=value,..." -> value
	for _, mf := range mfs {
		series := map[string]float64{}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			series[strings.Join(labels, ",")] = m.GetCounter().GetValue()
		}
		got[mf.GetName()] = series
	}
	want := map[string][]string{}
	for _, k := range refresh.Kinds() {
		want["cesd_refresh_errors_total"] = append(want["cesd_refresh_errors_total"], "kind="+k)
	}
	for _, tr := range trigger.All() {
		for _, r := range []string{ResultSwapped, ResultUnchanged, ResultError} {
			want["cesd_refreshes_total"] = append(want["cesd_refreshes_total"], "result="+r+",trigger="+string(tr))
		}
	}
	for family, series := range want {
		if len(got[family]) != len(series) {
			t.Errorf("%s has %d series, want %d", family, len(got[family]), len(series))
		}
		for _, s := range series {
			v, ok := got[family][s]
			if !ok || v != 0 {
				t.Errorf("%s{%s} = %v (present %v), want 0 from startup", family, s, v, ok)
			}
		}
	}
}

// TestDocsNameTheRealErrorKinds checks the docs against the pipeline's
// stages: operations.md lists every kind, and every kind="..." that
// reliability.md and alerts.md cite is one the daemon counts.
func TestDocsNameTheRealErrorKinds(t *testing.T) {
	ops, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for line := range strings.Lines(string(ops)) {
		if strings.HasPrefix(line, "| `cesd_refresh_errors_total{kind}`") {
			row = line
		}
	}
	if row == "" {
		t.Fatal("docs/operations.md has no row for cesd_refresh_errors_total{kind}")
	}
	for _, k := range refresh.Kinds() {
		if !strings.Contains(row, "`"+k+"`") {
			t.Errorf("docs/operations.md: the cesd_refresh_errors_total row does not list kind %q", k)
		}
	}
	cited := regexp.MustCompile(`refresh_errors(?:_total)?\{kind="([a-z_]+)"\}|\(` + "`" + `kind="([a-z_]+)"`)
	for _, doc := range []string{"../docs/reliability.md", "../docs/alerts.md", "../docs/operations.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cited.FindAllStringSubmatch(string(b), -1) {
			k := m[1] + m[2]
			if !slices.Contains(refresh.Kinds(), k) {
				t.Errorf("%s cites kind %q, which cesd never counts (kinds: %v)", doc, k, refresh.Kinds())
			}
		}
	}
	for _, s := range refresh.Stages() {
		if s != refresh.StageFetch && !strings.Contains(refreshErrorsHelp(), string(s)) {
			t.Errorf("the help of cesd_refresh_errors_total does not name stage %s", s)
		}
	}
}
