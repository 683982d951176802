package metrics

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walarchive"
)

type fakeSource struct{}

func (fakeSource) Clients() []stats.Client {
	return []stats.Client{{State: stats.Idle}, {State: stats.Idle}, {State: stats.InTransaction}}
}

func (fakeSource) Totals() stats.Totals {
	t := stats.Totals{Accepted: 7, BytesIn: 100, BytesOut: 200, Transactions: 3, Queries: 4}
	t.Refused[stats.RefusedAuth] = 2
	t.Cancels[stats.CancelMatched], t.Cancels[stats.CancelForwarded] = 5, 3
	t.CancelForwardFailures = 1
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

func (fakeSource) MaxClientConns() int { return 250 }

func (fakeSource) BackupStats() stats.BackupStats {
	return stats.BackupStats{Succeeded: 1, Bytes: 4096, LastBytes: 4096, LastDuration: time.Second, LastSuccess: time.Unix(1700000000, 0)}
}

// exposition returns what /metrics serves for src, as text.
func exposition(t *testing.T, src Source, archive func() (walarchive.Status, bool)) string {
	t.Helper()
	return relayExposition(t, src, archive, nil)
}

// relayExposition is exposition with the WAL relay's metrics read from
// relay.
func relayExposition(t *testing.T, src Source, archive func() (walarchive.Status, bool), relay Relay) string {
	t.Helper()
	fams, err := New(src, func(context.Context) error { return errStartingUp }, archive, relay).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range fams {
		if n := f.GetName(); !strings.HasPrefix(n, "pgverbs_") && !strings.HasPrefix(n, "process_") && !strings.HasPrefix(n, "go_") {
			t.Errorf("metric %s is outside pgverbs_, process_ and go_", n)
		}
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestCollectReadsSource(t *testing.T) {
	text := exposition(t, fakeSource{}, nil)
	for _, line := range []string{
		`pgverbs_ready 0`,
		`pgverbs_max_client_conns 250`,
		`pgverbs_client_connections{state="idle"} 2`,
		`pgverbs_client_connections{state="idle_in_transaction"} 1`,
		`pgverbs_client_connections{state="active"} 0`,
		`pgverbs_client_connections_accepted_total 7`,
		`pgverbs_client_connections_refused_total{reason="auth_failure"} 2`,
		`pgverbs_client_connections_refused_total{reason="limit"} 0`,
		`pgverbs_cancel_requests_total{outcome="matched"} 5`,
		`pgverbs_cancel_requests_total{outcome="forwarded"} 3`,
		`pgverbs_cancel_requests_total{outcome="dropped"} 0`,
		`pgverbs_cancel_forward_failures_total 1`,
		`pgverbs_backend_connect_duration_seconds_bucket{le="0.0025"} 1`,
		`pgverbs_backend_connect_duration_seconds_bucket{le="0.001"} 0`,
		`pgverbs_backend_connect_duration_seconds_count 1`,
		`pgverbs_relayed_bytes_total{direction="client_to_server"} 100`,
		`pgverbs_relayed_bytes_total{direction="server_to_client"} 200`,
		`pgverbs_transactions_total 3`,
		`pgverbs_queries_total 4`,
		`pgverbs_commands_total{command="BASE BACKUP",outcome="58"} 1`,
		`pgverbs_command_duration_seconds_count{command="BASE BACKUP",outcome="ok"} 1`,
		`pgverbs_base_backup_bytes_total 4096`,
		`pgverbs_base_backup_last_success_timestamp_seconds 1.7e+09`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no line %s in:\n%s", line, text)
		}
	}
}

func mustContainLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, line := range lines {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("no line %s in:\n%s", line, text)
		}
	}
}

func TestArchiveMetrics(t *testing.T) {
	h := stats.NewHistogram(stats.CommandBuckets)
	h.Observe(0.003)
	h.Observe(0.2)
	fsync := h.Snapshot()
	st := walarchive.Status{
		State: walarchive.Reconnecting, Dir: t.TempDir(), Timeline: 2,
		Received: 0x3000100, Flushed: 0x3000000, UpstreamFlush: 0x3000200, LagBytes: 0x200, LagSeconds: 1.5,
		Segments: 3, Bytes: 3 << 24, Reconnects: 4, BytesReceived: 5000, SegmentsClosed: 2, FsyncSeconds: &fsync,
		Upload: walarchive.UploadStatus{Storage: "storage://offsite/wal", Known: true, PendingFiles: 2, PendingBytes: 1000,
			OldestPending: "000000020000000000000003", OldestPendingSeconds: 7.5, LastError: "store down", UploadedFiles: 9, UploadedBytes: 90},
	}
	text := exposition(t, fakeSource{}, func() (walarchive.Status, bool) { return st, true })
	mustContainLines(t, text,
		`pgverbs_wal_archive_state{state="reconnecting"} 1`,
		`pgverbs_wal_archive_state{state="streaming"} 0`,
		`pgverbs_wal_archive_state{state="failed"} 0`,
		`pgverbs_wal_archive_timeline 2`,
		`pgverbs_wal_archive_received_lsn_bytes 5.0331904e+07`,
		`pgverbs_wal_archive_flushed_lsn_bytes 5.0331648e+07`,
		`pgverbs_wal_archive_upstream_flush_lsn_bytes 5.033216e+07`,
		`pgverbs_wal_archive_lag_bytes 512`,
		`pgverbs_wal_archive_lag_seconds 1.5`,
		`pgverbs_wal_archive_segments 3`,
		`pgverbs_wal_archive_bytes 5.0331648e+07`,
		`pgverbs_wal_archive_fsync_duration_seconds_bucket{le="0.005"} 1`,
		`pgverbs_wal_archive_fsync_duration_seconds_count 2`,
		`pgverbs_wal_archive_reconnects_total 4`,
		`pgverbs_wal_archive_received_bytes_total 5000`,
		`pgverbs_wal_archive_segments_completed_total 2`,
		`pgverbs_wal_archive_upload_pending_files 2`,
		`pgverbs_wal_archive_upload_pending_bytes 1000`,
		`pgverbs_wal_archive_upload_oldest_pending_seconds 7.5`,
		`pgverbs_wal_archive_upload_failing 1`,
		`pgverbs_wal_archive_uploaded_files_total 9`,
		`pgverbs_wal_archive_uploaded_bytes_total 90`,
	)
	// The directory's file system is asked at the scrape.
	if strings.Contains(text, "pgverbs_wal_archive_filesystem_size_bytes 0\n") ||
		!strings.Contains(text, "pgverbs_wal_archive_filesystem_avail_bytes ") {
		t.Errorf("no file system size of the archive directory in:\n%s", text)
	}
}

// TestNoArchiveMetrics: with no archive every series exists, at 0, and
// no state is 1.
func TestNoArchiveMetrics(t *testing.T) {
	for name, archive := range map[string]func() (walarchive.Status, bool){
		"not wired":   nil,
		"not started": func() (walarchive.Status, bool) { return walarchive.Status{}, false },
	} {
		t.Run(name, func(t *testing.T) {
			text := exposition(t, fakeSource{}, archive)
			mustContainLines(t, text,
				`pgverbs_wal_archive_state{state="streaming"} 0`,
				`pgverbs_wal_archive_state{state="paused"} 0`,
				`pgverbs_wal_archive_state{state="reconnecting"} 0`,
				`pgverbs_wal_archive_state{state="stopped"} 0`,
				`pgverbs_wal_archive_state{state="failed"} 0`,
				`pgverbs_wal_archive_lag_bytes 0`,
				`pgverbs_wal_archive_filesystem_size_bytes 0`,
				`pgverbs_wal_archive_fsync_duration_seconds_count 0`,
				`pgverbs_wal_archive_reconnects_total 0`,
				`pgverbs_wal_archive_upload_pending_files 0`,
				`pgverbs_wal_archive_upload_failing 0`,
			)
		})
	}
}

// TestServerRoutesWAL: /wal/ goes to the WAL handler as sent, not cleaned
// into a redirect by the mux, and the other endpoints are the mux's.
func TestServerRoutesWAL(t *testing.T) {
	var got []string
	var mu sync.Mutex
	wal := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	})
	srv, err := Start(Options{Addr: "127.0.0.1:0", Source: fakeSource{}, Dial: fakeServer(t, nil), WAL: wal})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + srv.Addr().String()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{
		"/wal/000000010000000000000001": http.StatusTeapot,
		"/wal/../x":                     http.StatusTeapot,
		"/wal/..%2Fx":                   http.StatusTeapot,
		"/healthz":                      http.StatusOK,
		"/metrics":                      http.StatusOK,
		"/walx":                         http.StatusNotFound,
	} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if !slices.Contains(got, "/wal/../x") {
		t.Errorf("the WAL handler saw %q, want the paths as sent", got)
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
