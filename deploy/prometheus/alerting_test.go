//go:build field

// Package prometheus_test runs the shipped alert rules and Grafana panels in
// Debian's real Prometheus and Alertmanager, against a real cesd run.
package prometheus_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/deploy/internal/fieldtest"
)

// TestAlertsEndToEnd: Prometheus scrapes a real cesd run (job "cesd", as the
// rules expect) and evaluates the shipped rules, with every for: cut to 0s
// in a test copy; Alertmanager routes the alerts to a webhook the test runs.
func TestAlertsEndToEnd(t *testing.T) {
	fieldtest.Need(t, false, "prometheus", "prometheus-alertmanager")
	work := t.TempDir()
	bin := fieldtest.BuildCesd(t, work)

	// A wallet whose certificate ends in 5 days: CesdWalletExpiringCritical.
	secret := fieldtest.RandomHex(t)
	sim := cestest.NewServer(cestest.Options{ClientSecret: secret, CertValidity: 5 * 24 * time.Hour})
	t.Cleanup(sim.Close)

	hook := newReceiver(t)
	amAddr, promAddr, metrics, callback := fieldtest.FreeAddr(t), fieldtest.FreeAddr(t), fieldtest.FreeAddr(t), fieldtest.FreeAddr(t)

	writeFile(t, filepath.Join(work, "alertmanager.yml"), fmt.Sprintf(`route:
  receiver: test
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: %s
        send_resolved: false
`, hook.URL))
	start(t, work, "alertmanager", "prometheus-alertmanager",
		"--config.file="+filepath.Join(work, "alertmanager.yml"),
		"--storage.path="+filepath.Join(work, "am-data"),
		"--web.listen-address="+amAddr,
		"--cluster.listen-address=")

	rules, err := os.ReadFile("cesd-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	forRE := regexp.MustCompile(`(?m)^(\s+)for: \S+$`)
	if len(forRE.FindAll(rules, -1)) == 0 {
		t.Fatal("no for: in cesd-rules.yaml; update the test")
	}
	writeFile(t, filepath.Join(work, "rules.yaml"), forRE.ReplaceAllString(string(rules), "${1}for: 0s"))
	// The scrape config docs/alerts.md gives for systemd, with short
	// intervals: the rules expect job="cesd".
	writeFile(t, filepath.Join(work, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: cesd
    static_configs:
      - targets: [%q]
`, filepath.Join(work, "rules.yaml"), amAddr, metrics))
	start(t, work, "prometheus", "prometheus",
		"--config.file="+filepath.Join(work, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(work, "prom-data"),
		"--web.listen-address="+promAddr)
	prom := &promAPI{addr: promAddr}

	cesd := fieldtest.Daemon(bin, "run")
	cesd.Env = append(os.Environ(),
		"CESD_BASE_URL="+sim.URL, "CESD_TOKEN_URL="+sim.TokenURL, "CESD_CLIENT_ID=cestest-client",
		"CESD_CLIENT_SECRET="+secret, "CESD_CA_FILE="+filepath.Join(work, "ca.pem"),
		"CESD_WALLET_DIR="+filepath.Join(work, "wallet"), "CESD_METRICS_LISTEN="+metrics,
		"CESD_LISTEN="+callback, "CESD_CALLBACK_URL=http://"+callback+"/cesd/notify",
		"CESD_POLL_INTERVAL=2s")
	writeFile(t, filepath.Join(work, "ca.pem"), string(sim.CACertPEM()))
	logs, err := os.Create(filepath.Join(work, "cesd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cesd.Stdout, cesd.Stderr = logs, logs
	if err := cesd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cesd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cesd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("cesd's log:\n%s", b)
		}
	})
	fieldtest.Wait(t, time.Minute, "Prometheus scraping a ready cesd", func() (bool, string) {
		v, err := prom.query(`cesd_ready{job="cesd"}`)
		return err == nil && len(v) == 1 && v[0] == "1", fmt.Sprint(v, err)
	})

	t.Run("a wallet 5 days from its end reaches the receiver", func(t *testing.T) {
		a := hook.wait(t, "CesdWalletExpiringCritical")
		if a.Labels["severity"] != "critical" || a.Labels["job"] != "cesd" || a.Labels["instance"] != metrics {
			t.Errorf("labels: %v", a.Labels)
		}
		if s := a.Annotations["summary"]; !strings.HasPrefix(s, "cesd wallet on "+metrics+" expires in 4d 23h") {
			t.Errorf("summary %q", s)
		}
		for _, k := range []string{"description", "runbook_url"} {
			if a.Annotations[k] == "" {
				t.Errorf("no %s annotation", k)
			}
		}
		if !strings.HasSuffix(a.Annotations["runbook_url"], "docs/alerts.md#cesdwalletexpiringcritical") {
			t.Errorf("runbook_url %q", a.Annotations["runbook_url"])
		}
		// The certificate tier fires beside it.
		hook.wait(t, "CesdCertificateExpiringCritical")
	})

	t.Run("a lost callback raises CesdNotificationsMissed", func(t *testing.T) {
		if hook.has("CesdNotificationsMissed") {
			t.Fatal("fired before any callback was lost")
		}
		sim.SetFault(cestest.OpCallback, cestest.Fault{Kind: cestest.LoseCallbacks, Times: 1})
		sim.Rotate("all")
		a := hook.wait(t, "CesdNotificationsMissed")
		if !strings.Contains(a.Annotations["description"], "1 rotation(s)") {
			t.Errorf("description %q", a.Annotations["description"])
		}
	})

	t.Run("every Grafana panel query evaluates", func(t *testing.T) {
		exprs := dashboardQueries(t, "../grafana/cesd.json")
		names, err := prom.names()
		if err != nil {
			t.Fatal(err)
		}
		metricRE := regexp.MustCompile(`\bcesd_[a-z_]+`)
		// This cesd runs outside fleet mode; the dashboard hides fleet
		// followers with cesd_leader, which cmd/cesd's tests hold to the
		// fleet build's registry.
		fleetOnly := map[string]bool{"cesd_leader": true}
		for _, e := range exprs {
			q := strings.NewReplacer(`$instance`, `.*`, `$__rate_interval`, `1m`, `$__range`, `1h`, `$__interval`, `15s`).Replace(e)
			if _, err := prom.query(q); err != nil {
				t.Errorf("%s: %v", e, err)
			}
			for _, m := range metricRE.FindAllString(e, -1) {
				if !names[m] && !fleetOnly[m] {
					t.Errorf("%s: cesd exports no %s", e, m)
				}
			}
		}
		t.Logf("%d panel queries evaluated", len(exprs))
	})

	t.Run("a killed cesd raises CesdDown", func(t *testing.T) {
		if hook.has("CesdDown") {
			t.Fatal("fired while cesd was up")
		}
		if err := cesd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-exited
		a := hook.wait(t, "CesdDown")
		if a.Labels["instance"] != metrics || a.Annotations["summary"] != "cesd on "+metrics+" is down" {
			t.Errorf("alert %+v", a)
		}
	})
}

// start runs a daemon for the test's life and waits until its /-/ready says so.
func start(t *testing.T, work, name, bin string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(work, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := fieldtest.Daemon(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s's log (tail):\n%s", name, tail(string(b), 30))
		}
	})
	var addr string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
			addr = v
		}
	}
	fieldtest.Wait(t, time.Minute, name+" ready", func() (bool, string) {
		select {
		case <-done:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("%s exited:\n%s", name, tail(string(b), 30))
		default:
		}
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// alert is one alert of Alertmanager's webhook payload.
type alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// receiver is the webhook Alertmanager notifies.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	alerts map[string]alert // by alertname, firing only
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{alerts: map[string]alert{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var msg struct {
			Alerts []alert `json:"alerts"`
		}
		if err := json.NewDecoder(req.Body).Decode(&msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, a := range msg.Alerts {
			if a.Status == "firing" {
				r.alerts[a.Labels["alertname"]] = a
			}
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.alerts[name]
	return ok
}

func (r *receiver) wait(t *testing.T, name string) alert {
	t.Helper()
	var a alert
	fieldtest.Wait(t, time.Minute, name+" at the receiver", func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		var ok bool
		a, ok = r.alerts[name]
		names := make([]string, 0, len(r.alerts))
		for n := range r.alerts {
			names = append(names, n)
		}
		return ok, fmt.Sprintf("received %v", names)
	})
	return a
}

// promAPI is the bit of Prometheus' HTTP API the test needs.
type promAPI struct{ addr string }

// query evaluates an instant query and returns the sample values.
func (p *promAPI) query(q string) ([]string, error) {
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s", r.Error)
	}
	var vals []string
	for _, s := range r.Data.Result {
		vals = append(vals, fmt.Sprint(s.Value[1]))
	}
	return vals, nil
}

// names is every metric name Prometheus holds.
func (p *promAPI) names() (map[string]bool, error) {
	resp, err := http.Get("http://" + p.addr + "/api/v1/label/__name__/values")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data []string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, n := range r.Data {
		m[n] = true
	}
	return m, nil
}

// dashboardQueries is every panel target's expr, nested rows included.
func dashboardQueries(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var exprs []string
	var walk func(raw []byte)
	walk = func(raw []byte) {
		var p panel
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				exprs = append(exprs, tg.Expr)
			}
		}
		for _, c := range p.Panels {
			walk(c)
		}
	}
	walk(b)
	if len(exprs) == 0 {
		t.Fatal("no panel queries")
	}
	return exprs
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
