package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walarchive"
)

// Source is what the metrics read of the proxy (*proxy.Server implements
// it): the sessions and totals, and the recorders of rare events.
type Source interface {
	stats.Source
	// ConnectLatency is the backend connect latencies, in seconds.
	ConnectLatency() stats.HistogramSnapshot
	// CommandStats is the commands run, by command and outcome.
	CommandStats() []stats.CommandStats
	// BackupStats is what the base backups that succeeded recorded.
	BackupStats() stats.BackupStats
	// MaxClientConns is the client connection limit in effect.
	MaxClientConns() int
}

// Every metric pgverbs exports besides the process and Go collectors'.
// Names are under pgverbs_ with the unit in the name; label values come
// from small fixed sets (states, reasons, directions, command names,
// SQLSTATE classes), never from users.
var (
	up = prometheus.NewDesc("pgverbs_ready",
		"1 when the backend accepts connections (the /readyz check, cached for a second), else 0.", nil, nil)
	maxClientConns = prometheus.NewDesc("pgverbs_max_client_conns",
		"The max_client_conns limit in effect (it changes on SIGHUP), for alerts on the connections in use.", nil, nil)
	clientConnections = prometheus.NewDesc("pgverbs_client_connections",
		"Client connections being served, by state: startup (not yet authenticated), idle, active (a query forwarded, no ReadyForQuery yet), idle_in_transaction, idle_in_transaction_aborted, command (a pgverbs command runs).",
		[]string{"state"}, nil)
	connectionsAccepted = prometheus.NewDesc("pgverbs_client_connections_accepted_total",
		"Client connections accepted by the listener.", nil, nil)
	connectionsRefused = prometheus.NewDesc("pgverbs_client_connections_refused_total",
		"Client connections refused before relaying, by reason: limit (max_client_conns), auth_failure (the server refused the login), backend_unreachable, tls_error, other.",
		[]string{"reason"}, nil)
	cancelRequests = prometheus.NewDesc("pgverbs_cancel_requests_total",
		"Cancel requests received (from clients, or forwarded by a peer), by outcome: matched (a session of this instance: passed to its server), forwarded (another instance's: sent on to peers), dropped (no session here and no peer to ask). Their sum is the requests received.",
		[]string{"outcome"}, nil)
	cancelForwardFailures = prometheus.NewDesc("pgverbs_cancel_forward_failures_total",
		"Cancel requests forwarded to a peer that were not delivered: the connection or the write failed or timed out (a peer down), or 64 forwards were already in flight.", nil, nil)
	backendConnect = prometheus.NewDesc("pgverbs_backend_connect_duration_seconds",
		"Time to open a backend connection for a client session (TCP and TLS), failed attempts included.", nil, nil)
	relayedBytes = prometheus.NewDesc("pgverbs_relayed_bytes_total",
		"Bytes of protocol messages relayed after startup, by direction: client_to_server, server_to_client. pgverbs's own commands and their replies are not counted.",
		[]string{"direction"}, nil)
	transactions = prometheus.NewDesc("pgverbs_transactions_total",
		"Transactions ended, counted from the ReadyForQuery messages relayed to clients that say idle: an autocommit statement or a transaction block's COMMIT or ROLLBACK each count one.", nil, nil)
	queries = prometheus.NewDesc("pgverbs_queries_total",
		"Query and Sync messages relayed to the server.", nil, nil)
	commandsRun = prometheus.NewDesc("pgverbs_commands_total",
		"pgverbs commands run, by command and outcome: ok, or the SQLSTATE class of the error (e.g. 42, 58).",
		[]string{"command", "outcome"}, nil)
	commandDuration = prometheus.NewDesc("pgverbs_command_duration_seconds",
		"Duration of pgverbs commands, by command and outcome.", []string{"command", "outcome"}, nil)
	backupsSucceeded = prometheus.NewDesc("pgverbs_base_backups_succeeded_total",
		"BASE BACKUP runs that succeeded (failures are in pgverbs_commands_total by outcome).", nil, nil)
	backupBytes = prometheus.NewDesc("pgverbs_base_backup_bytes_total",
		"Bytes written by the BASE BACKUP runs that succeeded.", nil, nil)
	backupLastBytes = prometheus.NewDesc("pgverbs_base_backup_last_bytes",
		"Size of the last successful BASE BACKUP, in bytes; 0 before the first.", nil, nil)
	backupLastDuration = prometheus.NewDesc("pgverbs_base_backup_last_duration_seconds",
		"Duration of the last successful BASE BACKUP; 0 before the first.", nil, nil)
	backupLastSuccess = prometheus.NewDesc("pgverbs_base_backup_last_success_timestamp_seconds",
		"Unix time the last successful BASE BACKUP ended; 0 before the first since the process started.", nil, nil)

	// The WAL archive's. They are exported, as zeros, when no archive
	// runs too, so that a dashboard and the alerts need no absent().
	archiveState = prometheus.NewDesc("pgverbs_wal_archive_state",
		"1 for the state the WAL archive is in (streaming, paused, reconnecting, stopped, failed), 0 for the others; all 0 when no archive was started.",
		[]string{"state"}, nil)
	archiveTimeline = prometheus.NewDesc("pgverbs_wal_archive_timeline",
		"Timeline the WAL archive receives; 0 when none.", nil, nil)
	archiveReceived = prometheus.NewDesc("pgverbs_wal_archive_received_lsn_bytes",
		"LSN after the last WAL byte the archive received, as a byte position.", nil, nil)
	archiveFlushed = prometheus.NewDesc("pgverbs_wal_archive_flushed_lsn_bytes",
		"LSN after the last WAL byte the archive fsynced: the flush position it reports upstream.", nil, nil)
	archiveUpstream = prometheus.NewDesc("pgverbs_wal_archive_upstream_flush_lsn_bytes",
		"The upstream's WAL end as it last said.", nil, nil)
	archiveLagBytes = prometheus.NewDesc("pgverbs_wal_archive_lag_bytes",
		"WAL the upstream has that the archive has not made durable, in bytes.", nil, nil)
	archiveLagSeconds = prometheus.NewDesc("pgverbs_wal_archive_lag_seconds",
		"How long the archive has been behind the upstream's WAL end; 0 when caught up.", nil, nil)
	archiveSegments = prometheus.NewDesc("pgverbs_wal_archive_segments",
		"WAL segment files the archive holds (complete, compressed and partial; history files not counted).", nil, nil)
	archiveBytes = prometheus.NewDesc("pgverbs_wal_archive_bytes",
		"Bytes the archive's files take on disk.", nil, nil)
	archiveFsAvail = prometheus.NewDesc("pgverbs_wal_archive_filesystem_avail_bytes",
		"Bytes free for pgverbs in the file system of the archive directory; 0 when no archive or unknown.", nil, nil)
	archiveFsSize = prometheus.NewDesc("pgverbs_wal_archive_filesystem_size_bytes",
		"Size of the file system of the archive directory; 0 when no archive or unknown.", nil, nil)
	archiveFsync = prometheus.NewDesc("pgverbs_wal_archive_fsync_duration_seconds",
		"Duration of the archive's fdatasync calls: with SYNCHRONOUS on, what a synchronous commit waits for besides the network.", nil, nil)
	archiveReconnects = prometheus.NewDesc("pgverbs_wal_archive_reconnects_total",
		"Times the archive reconnected to its upstream since pgverbs started.", nil, nil)
	archiveReceivedBytes = prometheus.NewDesc("pgverbs_wal_archive_received_bytes_total",
		"WAL bytes the archive received since pgverbs started.", nil, nil)
	archiveSegmentsClosed = prometheus.NewDesc("pgverbs_wal_archive_segments_completed_total",
		"Segments the archive completed (renamed from .partial) since pgverbs started.", nil, nil)

	// The upload of an archive started TO a storage URL; 0 for a local
	// archive.
	archiveUploadPending = prometheus.NewDesc("pgverbs_wal_archive_upload_pending_files",
		"Completed segments and history files held locally whose upload to object storage is not confirmed.", nil, nil)
	archiveUploadPendingBytes = prometheus.NewDesc("pgverbs_wal_archive_upload_pending_bytes",
		"Bytes of the files not yet uploaded to object storage.", nil, nil)
	archiveUploadOldest = prometheus.NewDesc("pgverbs_wal_archive_upload_oldest_pending_seconds",
		"How long ago the oldest file not yet uploaded to object storage was completed; 0 when none waits.", nil, nil)
	archiveUploadFailing = prometheus.NewDesc("pgverbs_wal_archive_upload_failing",
		"1 while the last upload to object storage failed (SHOW WAL ARCHIVE has the error), else 0.", nil, nil)
	archiveUploadedFiles = prometheus.NewDesc("pgverbs_wal_archive_uploaded_files_total",
		"Files the archive uploaded to object storage since pgverbs started.", nil, nil)
	archiveUploadedBytes = prometheus.NewDesc("pgverbs_wal_archive_uploaded_bytes_total",
		"Bytes the archive uploaded to object storage since pgverbs started.", nil, nil)
)

// archiveStates are the states pgverbs_wal_archive_state has a series
// for, always all of them: an alert on one needs its series to exist.
var archiveStates = []walarchive.State{walarchive.Streaming, walarchive.Paused, walarchive.Reconnecting, walarchive.Stopped, walarchive.Failed}

// New returns the registry /metrics serves: the process and Go
// collectors, the proxy's and the WAL archive's. ready, when not nil, is
// the readiness check behind pgverbs_ready; archive, which may be nil
// (no archive), reports the WAL archive, and relay, which may be nil
// too, the standbys and slots of the WAL relay (relay.go).
func New(src Source, ready func(context.Context) error, archive func() (walarchive.Status, bool), relay Relay) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		proxyCollector{src, ready},
		archiveCollector{archive},
		relayCollector{relay, archive},
	)
	return reg
}

// constMetrics sends constant metrics to ch, read at scrape time.
type constMetrics chan<- prometheus.Metric

func (ch constMetrics) counter(d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func (ch constMetrics) gauge(d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (ch constMetrics) histogram(d *prometheus.Desc, h stats.HistogramSnapshot, labels ...string) {
	ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, h.Buckets, labels...)
}

func describe(ch chan<- *prometheus.Desc, descs ...*prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// proxyCollector reads the proxy at scrape time.
type proxyCollector struct {
	src   Source
	ready func(context.Context) error
}

// Describe implements prometheus.Collector.
func (proxyCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, up, maxClientConns, clientConnections, connectionsAccepted, connectionsRefused,
		cancelRequests, cancelForwardFailures, backendConnect, relayedBytes,
		transactions, queries, commandsRun, commandDuration,
		backupsSucceeded, backupBytes, backupLastBytes, backupLastDuration, backupLastSuccess)
}

// Collect implements prometheus.Collector.
func (c proxyCollector) Collect(out chan<- prometheus.Metric) {
	ch := constMetrics(out)
	counter, gauge, histogram := ch.counter, ch.gauge, ch.histogram

	if c.ready != nil {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		ok := 0.0
		if c.ready(ctx) == nil {
			ok = 1
		}
		cancel()
		gauge(up, ok)
	}
	gauge(maxClientConns, float64(c.src.MaxClientConns()))

	byState := make(map[stats.State]int, len(stats.States))
	for _, cl := range c.src.Clients() {
		byState[cl.State]++
	}
	for _, st := range stats.States {
		gauge(clientConnections, float64(byState[st]), stateLabel(st))
	}

	t := c.src.Totals()
	counter(connectionsAccepted, t.Accepted)
	for _, r := range stats.Refusals {
		counter(connectionsRefused, t.Refused[r], r.String())
	}
	for _, o := range stats.CancelOutcomes {
		counter(cancelRequests, t.Cancels[o], o.String())
	}
	counter(cancelForwardFailures, t.CancelForwardFailures)
	histogram(backendConnect, c.src.ConnectLatency())
	counter(relayedBytes, t.BytesIn, "client_to_server")
	counter(relayedBytes, t.BytesOut, "server_to_client")
	counter(transactions, t.Transactions)
	counter(queries, t.Queries)

	for _, cs := range c.src.CommandStats() {
		counter(commandsRun, cs.Duration.Count, cs.Command, cs.Outcome)
		histogram(commandDuration, cs.Duration, cs.Command, cs.Outcome)
	}

	b := c.src.BackupStats()
	counter(backupsSucceeded, b.Succeeded)
	counter(backupBytes, b.Bytes)
	gauge(backupLastBytes, float64(b.LastBytes))
	gauge(backupLastDuration, b.LastDuration.Seconds())
	last := 0.0
	if !b.LastSuccess.IsZero() {
		last = float64(b.LastSuccess.UnixNano()) / 1e9
	}
	gauge(backupLastSuccess, last)
}

// stateLabel spells a state as a label value: the words of
// pg_stat_activity joined by underscores.
func stateLabel(s stats.State) string {
	switch s {
	case stats.InTransaction:
		return "idle_in_transaction"
	case stats.FailedTransaction:
		return "idle_in_transaction_aborted"
	}
	return s.String()
}

// archiveCollector reads the WAL archive's Status at scrape time.
type archiveCollector struct {
	status func() (walarchive.Status, bool)
}

// Describe implements prometheus.Collector.
func (archiveCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, archiveState, archiveTimeline, archiveReceived, archiveFlushed, archiveUpstream,
		archiveLagBytes, archiveLagSeconds, archiveSegments, archiveBytes, archiveFsAvail, archiveFsSize,
		archiveFsync, archiveReconnects, archiveReceivedBytes, archiveSegmentsClosed,
		archiveUploadPending, archiveUploadPendingBytes, archiveUploadOldest, archiveUploadFailing,
		archiveUploadedFiles, archiveUploadedBytes)
}

// Collect implements prometheus.Collector.
func (c archiveCollector) Collect(out chan<- prometheus.Metric) {
	ch := constMetrics(out)
	var st walarchive.Status
	ok := false
	if c.status != nil {
		st, ok = c.status()
	}
	for _, s := range archiveStates {
		v := 0.0
		if ok && st.State == s {
			v = 1
		}
		ch.gauge(archiveState, v, string(s))
	}
	ch.gauge(archiveTimeline, float64(st.Timeline))
	ch.gauge(archiveReceived, float64(st.Received))
	ch.gauge(archiveFlushed, float64(st.Flushed))
	ch.gauge(archiveUpstream, float64(st.UpstreamFlush))
	ch.gauge(archiveLagBytes, float64(st.LagBytes))
	ch.gauge(archiveLagSeconds, st.LagSeconds)
	ch.gauge(archiveSegments, float64(st.Segments))
	ch.gauge(archiveBytes, float64(st.Bytes))
	var avail, size uint64
	if ok && st.Dir != "" {
		// Asked at each scrape: a full disk is what stops the archive,
		// and this is what shows it coming.
		avail, size, _ = diskSpace(st.Dir)
	}
	ch.gauge(archiveFsAvail, float64(avail))
	ch.gauge(archiveFsSize, float64(size))
	fsync := stats.HistogramSnapshot{}
	if st.FsyncSeconds != nil {
		fsync = *st.FsyncSeconds
	}
	ch.histogram(archiveFsync, fsync)
	ch.counter(archiveReconnects, st.Reconnects)
	ch.counter(archiveReceivedBytes, st.BytesReceived)
	ch.counter(archiveSegmentsClosed, st.SegmentsClosed)
	up := st.Upload
	ch.gauge(archiveUploadPending, float64(up.PendingFiles))
	ch.gauge(archiveUploadPendingBytes, float64(up.PendingBytes))
	ch.gauge(archiveUploadOldest, up.OldestPendingSeconds)
	failing := 0.0
	if up.LastError != "" {
		failing = 1
	}
	ch.gauge(archiveUploadFailing, failing)
	ch.counter(archiveUploadedFiles, up.UploadedFiles)
	ch.counter(archiveUploadedBytes, up.UploadedBytes)
}
