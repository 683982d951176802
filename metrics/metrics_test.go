package metrics

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pgverbs/pgverbs/stats"
)

type fakeSource struct{}

func (fakeSource) Clients() []stats.Client {
	return []stats.Client{{State: stats.Idle}, {State: stats.Idle}, {State: stats.InTransaction}}
}

func (fakeSource) Totals() stats.Totals {
	t := stats.Totals{Accepted: 7, BytesIn: 100, BytesOut: 200, Transactions: 3, Queries: 4}
	t.Refused[stats.RefusedAuth] = 2
	return t
}

func (fakeSource) ConnectLatency() stats.HistogramSnapshot {
	h := stats.NewHistogram(stats.ConnectBuckets)
	h.Observe(0.002)
	return h.Snapshot()
}

func (fakeSource) CommandStats() []stats.CommandStats {
	var c stats.Commands
	c.Record("BASE BACKUP", stats.OutcomeOK, time.Second)
	c.Record("BASE BACKUP", "58", time.Second)
	return c.Snapshot()
}

func (fakeSource) BackupStats() stats.BackupStats {
	return stats.BackupStats{Succeeded: 1, Bytes: 4096, LastBytes: 4096, LastDuration: time.Second, LastSuccess: time.Unix(1700000000, 0)}
}

// value finds the metric of that name whose labels include those given.
func value(t *testing.T, fams []*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
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
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func TestCollectReadsSource(t *testing.T) {
	fams, err := New(fakeSource{}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pgverbs_client_connections", []string{"state", "idle"}, 2},
		{"pgverbs_client_connections", []string{"state", "idle_in_transaction"}, 1},
		{"pgverbs_client_connections", []string{"state", "active"}, 0},
		{"pgverbs_client_connections_accepted_total", nil, 7},
		{"pgverbs_client_connections_refused_total", []string{"reason", "auth_failure"}, 2},
		{"pgverbs_client_connections_refused_total", []string{"reason", "limit"}, 0},
		{"pgverbs_backend_connect_duration_seconds", nil, 1},
		{"pgverbs_relayed_bytes_total", []string{"direction", "client_to_server"}, 100},
		{"pgverbs_relayed_bytes_total", []string{"direction", "server_to_client"}, 200},
		{"pgverbs_transactions_total", nil, 3},
		{"pgverbs_queries_total", nil, 4},
		{"pgverbs_commands_total", []string{"command", "BASE BACKUP", "outcome", "58"}, 1},
		{"pgverbs_command_duration_seconds", []string{"command", "BASE BACKUP", "outcome", "ok"}, 1},
		{"pgverbs_base_backup_bytes_total", nil, 4096},
		{"pgverbs_base_backup_last_success_timestamp_seconds", nil, 1700000000},
	} {
		if got := value(t, fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, f := range fams {
		if n := f.GetName(); !strings.HasPrefix(n, "pgverbs_") && !strings.HasPrefix(n, "process_") && !strings.HasPrefix(n, "go_") {
			t.Errorf("metric %s is outside pgverbs_, process_ and go_", n)
		}
	}
}

func TestReadinessCachedAndShared(t *testing.T) {
	var probes atomic.Int32
	release := make(chan struct{})
	r := newReadiness(func(context.Context) error {
		probes.Add(1)
		<-release
		return errStartingUp
	})
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	// Concurrent checks wait for the one probe.
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() { errs <- r.check(context.Background()) })
	}
	for { // until a check started the probe
		if probes.Load() == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, errStartingUp) {
			t.Fatalf("check: %v", err)
		}
	}
	// Within a second the answer is reused; after it, asked again.
	for _, step := range []struct {
		after time.Duration
		want  int32
	}{{999 * time.Millisecond, 1}, {2 * time.Millisecond, 2}} {
		mu.Lock()
		now = now.Add(step.after)
		mu.Unlock()
		_ = r.check(context.Background())
		if n := probes.Load(); n != step.want {
			t.Fatalf("%d probes %v later, want %d", n, step.after, step.want)
		}
	}
}

// fakeServer answers one startup packet with reply and closes.
func fakeServer(t *testing.T, reply []byte) Dialer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var hdr [4]byte
			if _, err := c.Read(hdr[:]); err == nil {
				buf := make([]byte, binary.BigEndian.Uint32(hdr[:])-4)
				_, _ = c.Read(buf)
				_, _ = c.Write(reply)
			}
			c.Close()
		}
	}()
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
}

func errorResponse(code string) []byte {
	body := []byte("SFATAL\x00C" + code + "\x00Mno\x00\x00")
	return append(binary.BigEndian.AppendUint32([]byte{'E'}, uint32(4+len(body))), body...)
}

func TestPgIsReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	authMD5 := []byte{'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4}
	for _, tc := range []struct {
		name  string
		reply []byte
		ready bool
	}{
		{"authentication request", authMD5, true},
		{"unknown role", errorResponse("28000"), true},
		{"too many connections", errorResponse("53300"), true},
		{"starting up", errorResponse("57P03"), false},
		{"closed without a word", nil, false},
	} {
		err := pgIsReady(fakeServer(t, tc.reply), "u", "db")(ctx)
		if (err == nil) != tc.ready {
			t.Errorf("%s: err %v, want ready %v", tc.name, err, tc.ready)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	refused := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	if err := pgIsReady(refused, "u", "db")(ctx); err == nil {
		t.Error("connection refused: ready")
	}
}
