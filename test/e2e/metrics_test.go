package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// scrape fetches /metrics with a real HTTP client and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metric returns the value of the sample of family name whose labels
// include the pairs given (a histogram's count); 0 when there is none.
func metric(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("/metrics has no %s", name)
	}
samples:
	for _, m := range f.GetMetric() {
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue samples
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// status returns the HTTP status of a GET of path.
func status(t *testing.T, base, path string) int {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls path until it answers want.
func waitStatus(t *testing.T, base, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := status(t, base, path)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, want %d", path, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopPostmaster shuts the cluster's server down (fast) without removing
// it, so that Restart can bring it back.
func stopPostmaster(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d did not stop", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetrics scrapes /metrics while traffic, a failed login, an INSTALL
// EXTENSION and a BASE BACKUP happen, and follows /readyz as the backend
// stops and returns.
func TestMetrics(t *testing.T) {
	c := cluster(t, pgtest.Options{InitDBArgs: []string{"--data-checksums"}})
	ctx := testCtx(t)
	exts, _ := filepath.Abs("../../examples/extensions")
	httpAddr := "127.0.0.1:" + itoa(freePort(t))
	p := startProxy(t, c.URL("", "", "postgres"), "--http-listen", httpAddr,
		"--extensions", exts, "--backup-root", t.TempDir())
	base := "http://" + httpAddr
	url := p.URL("postgres", "", "postgres")

	if got := status(t, base, "/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz: %d", got)
	}
	waitStatus(t, base, "/readyz", http.StatusOK)

	before := scrape(t, base)
	conn := connect(t, url)
	const n = 20
	for range n {
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	during := scrape(t, base)
	if got := metric(t, during, "pgverbs_client_connections", "state", "idle_in_transaction"); got != 1 {
		t.Errorf("connections idle in transaction: %v, want 1", got)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, base)
	if got := metric(t, after, "pgverbs_client_connections", "state", "idle"); got != 1 {
		t.Errorf("idle connections: %v, want 1", got)
	}
	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"pgverbs_queries_total", nil},
		{"pgverbs_relayed_bytes_total", []string{"direction", "client_to_server"}},
		{"pgverbs_relayed_bytes_total", []string{"direction", "server_to_client"}},
	} {
		if d := metric(t, after, m.name, m.labels...) - metric(t, before, m.name, m.labels...); d < n+2 {
			t.Errorf("%s%v moved by %v over %d queries", m.name, m.labels, d, n+2)
		}
	}
	// The n autocommit statements each end a transaction, BEGIN none,
	// COMMIT one.
	if d := metric(t, after, "pgverbs_transactions_total") - metric(t, before, "pgverbs_transactions_total"); d != n+1 {
		t.Errorf("pgverbs_transactions_total moved by %v, want %d", d, n+1)
	}
	if got := metric(t, after, "pgverbs_client_connections_accepted_total") - metric(t, before, "pgverbs_client_connections_accepted_total"); got != 1 {
		t.Errorf("accepted moved by %v, want 1", got)
	}
	if got := metric(t, after, "pgverbs_backend_connect_duration_seconds"); got < 1 {
		t.Errorf("backend connects timed: %v", got)
	}

	// A login the server refuses.
	if out, err := psql(t, c, p.URL("nosuchrole", "", "postgres"), "-c", "SELECT 1"); err == nil {
		t.Fatalf("login as an unknown role succeeded: %s", out)
	}
	if got := metric(t, scrape(t, base), "pgverbs_client_connections_refused_total", "reason", "auth_failure"); got != 1 {
		t.Errorf("refused for auth_failure: %v, want 1", got)
	}

	// Commands, by outcome.
	if out, err := psql(t, c, url, "-c", "INSTALL EXTENSION hello"); err != nil {
		t.Fatalf("INSTALL: %v\n%s", err, out)
	}
	if out, err := psql(t, c, url, "-c", "INSTALL EXTENSION nosuchextension"); err == nil {
		t.Fatalf("INSTALL of a missing package succeeded: %s", out)
	}
	if out, err := psql(t, c, url, "-c", "BASE BACKUP TO 'one'"); err != nil {
		t.Fatalf("BASE BACKUP: %v\n%s", err, out)
	}
	cmds := scrape(t, base)
	if got := metric(t, cmds, "pgverbs_commands_total", "command", "INSTALL EXTENSION", "outcome", "ok"); got != 1 {
		t.Errorf("INSTALL EXTENSION ok: %v, want 1", got)
	}
	failed := 0.0
	for _, m := range cmds["pgverbs_commands_total"].GetMetric() {
		var cmd, outcome string
		for _, lp := range m.GetLabel() {
			switch lp.GetName() {
			case "command":
				cmd = lp.GetValue()
			case "outcome":
				outcome = lp.GetValue()
			}
		}
		if cmd == "INSTALL EXTENSION" && outcome != "ok" {
			failed += m.Counter.GetValue()
			if len(outcome) != 2 {
				t.Errorf("outcome %q is not a SQLSTATE class", outcome)
			}
		}
	}
	if failed != 1 {
		t.Errorf("INSTALL EXTENSION failed: %v, want 1", failed)
	}
	if got := metric(t, cmds, "pgverbs_command_duration_seconds", "command", "BASE BACKUP", "outcome", "ok"); got != 1 {
		t.Errorf("BASE BACKUP durations: %v, want 1", got)
	}
	if got := metric(t, cmds, "pgverbs_base_backup_bytes_total"); got <= 0 {
		t.Errorf("base backup bytes: %v", got)
	}
	if got := metric(t, cmds, "pgverbs_base_backup_last_success_timestamp_seconds"); got < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last successful backup at %v", got)
	}
	if _, ok := cmds["process_cpu_seconds_total"]; !ok {
		t.Error("no process metrics")
	}

	// Readiness follows the backend.
	conn.Close(ctx)
	stopPostmaster(t, c)
	waitStatus(t, base, "/readyz", http.StatusServiceUnavailable)
	if got := status(t, base, "/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz while the backend is down: %d", got)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, base, "/readyz", http.StatusOK)
}
