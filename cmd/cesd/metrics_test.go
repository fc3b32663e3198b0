package main

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/ces/cestest"
)

// recorder notes the name of every metric registered through it.
type recorder struct {
	prometheus.Registerer
	names map[string]bool
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// registeredMetrics builds the daemon exactly as cesd run does and returns
// the names of every metric it registers.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	sim := cestest.NewServer(cestest.Options{})
	t.Cleanup(sim.Close)
	env := simEnv(t, sim, t.TempDir())
	fs := (&cli{stderr: &strings.Builder{}}).flagSet("run", "")
	cfg, _, err := loadConfig(fs, []string{"--callback-url", "http://127.0.0.1:1/cb", "--listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0"}, env, needs{ces: true, wallet: true})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cesConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	rec := &recorder{Registerer: reg, names: map[string]bool{}}
	rec.MustRegister(prometheusCollectors()...)
	_, callback, err := buildDaemon(cfg, cc, zap.NewNop(), rec, reg, extras{})
	if err != nil {
		t.Fatal(err)
	}
	callback.Close()
	return rec.names
}

// fleetOnlyMetrics are registered only by the fleet build, by daemon/leader
// and daemon/standby; TestFleetOnlyMetricsRegistered (tag fleet) holds
// them to it.
var fleetOnlyMetrics = []string{"cesd_leader", "cesd_leader_transitions_total", "cesd_leader_election_errors_total", "cesd_follower_warm"}

var metricRE = regexp.MustCompile(`\bcesd_[a-z0-9_]+`)

// TestAlertsAndDashboardUseRealMetrics guards alerting against renames: every
// cesd_* name the rules or the dashboard query must be one the daemon
// registers (histogram series map back to their family).
func TestAlertsAndDashboardUseRealMetrics(t *testing.T) {
	names := registeredMetrics(t)
	for _, m := range fleetOnlyMetrics {
		names[m] = true
	}
	for _, file := range []string{"../../deploy/prometheus/cesd-rules.yaml", "../../deploy/prometheus/cesd-rules.test.yaml", "../../deploy/grafana/cesd.json"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, m := range metricRE.FindAllString(string(data), -1) {
			used[m] = true
		}
		if len(used) < 5 {
			t.Fatalf("%s: found only %d metric names; is the extraction broken?", file, len(used))
		}
		var unknown []string
		for m := range used {
			base := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suf); ok && names[b] {
					base = b
				}
			}
			if !names[base] {
				unknown = append(unknown, m)
			}
		}
		sort.Strings(unknown)
		if len(unknown) > 0 {
			t.Errorf("%s uses metrics the daemon does not register: %v", file, unknown)
		}
	}
}

// TestOperationsDocNamesEveryMetric keeps the metrics section of
// docs/operations.md in step with what cesd registers, fleet mode's metrics
// included (TestFleetOnlyMetricsRegistered holds those to the fleet build).
func TestOperationsDocNamesEveryMetric(t *testing.T) {
	raw, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Metrics\n")
	if !ok {
		t.Fatal("docs/operations.md has no Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	names := registeredMetrics(t)
	for _, m := range fleetOnlyMetrics {
		names[m] = true
	}
	var missing []string
	for m := range names {
		if strings.HasPrefix(m, "cesd_") && !regexp.MustCompile("`"+m+"[`{]").MatchString(section) {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/operations.md's Metrics section does not name %v", missing)
	}
}

// TestProductMetricsRegistered pins the metric names of PRODUCT.md section 7,
// which other tools are built against.
func TestProductMetricsRegistered(t *testing.T) {
	names := registeredMetrics(t)
	for _, m := range []string{
		"cesd_wallet_expiration_timestamp_seconds",
		"cesd_wallet_start_timestamp_seconds",
		"cesd_certificate_expiration_timestamp_seconds",
		"cesd_last_rotation_timestamp_seconds",
		"cesd_last_refresh_success_timestamp_seconds",
		"cesd_generation_swaps_total",
		"cesd_refreshes_total",
		"cesd_notifications_total",
		"cesd_ces_requests_total",
		"cesd_ces_request_duration_seconds",
		"cesd_notification_endpoint_registered",
		"cesd_missed_notifications_total",
		"cesd_ces_tls_certificate_expiration_timestamp_seconds",
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !names[m] {
			t.Errorf("metric %s is not registered", m)
		}
	}
}
