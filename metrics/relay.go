package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walsender"
)

// Relay is what the WAL relay's metrics read: the standbys streaming
// from pgverbs's walsender and the archive's own slots.
type Relay interface {
	Standbys() []walsender.Standby
	Slots() []walarchive.Slot
}

// The WAL relay's. pgverbs_wal_standbys and pgverbs_wal_slots always
// exist (0 with no relay); the others have a series per standby or slot
// and exist only while there is one. Their labels are the exception to
// "never from users": application_name and slot_name are what an
// operator alerts on, and they stay few, since each standby holds a
// connection (max_client_conns bounds them) and each slot is created by
// a REPLICATION role and pins WAL on disk. Standbys sharing an
// application_name (walreceiver's default) share a series holding the
// worst of their lags, so the count of series is that of names, and a
// reconnecting standby keeps its series.
var (
	relayStandbys = prometheus.NewDesc("pgverbs_wal_standbys",
		"Standbys streaming from pgverbs's walsender (physical replication connections served from the archive).", nil, nil)
	relayFlushLagBytes = prometheus.NewDesc("pgverbs_wal_standby_flush_lag_bytes",
		"WAL the archive has made durable that the standby has not reported flushed, by application_name (the worst of standbys sharing one); absent until it reports.",
		[]string{"application_name"}, nil)
	relayReplayLagBytes = prometheus.NewDesc("pgverbs_wal_standby_replay_lag_bytes",
		"WAL the archive has made durable that the standby has not reported replayed, by application_name; absent until it reports.",
		[]string{"application_name"}, nil)
	relayFlushLagSeconds = prometheus.NewDesc("pgverbs_wal_standby_flush_lag_seconds",
		"pg_stat_replication's flush_lag for the standby: from sending WAL to its report that it was flushed, by application_name; absent while unknown.",
		[]string{"application_name"}, nil)
	relayReplayLagSeconds = prometheus.NewDesc("pgverbs_wal_standby_replay_lag_seconds",
		"pg_stat_replication's replay_lag for the standby, by application_name; absent while unknown.",
		[]string{"application_name"}, nil)
	relaySlots = prometheus.NewDesc("pgverbs_wal_slots",
		"pgverbs's own replication slots (persistent and temporary) in the running archive.", nil, nil)
	relaySlotRetained = prometheus.NewDesc("pgverbs_wal_slot_retained_bytes",
		"WAL the slot keeps in the archive: the archive's durable position minus the slot's restart_lsn (0 while it reserves none), by slot_name.",
		[]string{"slot_name"}, nil)
)

// relayCollector reads the relay, and the archive's durable position
// the lags are measured from, at scrape time.
type relayCollector struct {
	relay  Relay
	status func() (walarchive.Status, bool)
}

// Describe implements prometheus.Collector.
func (relayCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, relayStandbys, relayFlushLagBytes, relayReplayLagBytes, relayFlushLagSeconds, relayReplayLagSeconds,
		relaySlots, relaySlotRetained)
}

// standbyLags are the worst lags of the standbys sharing a name; -1 is
// unknown.
type standbyLags struct {
	flushBytes, replayBytes, flushSeconds, replaySeconds float64
}

// Collect implements prometheus.Collector.
func (c relayCollector) Collect(out chan<- prometheus.Metric) {
	ch := constMetrics(out)
	var standbys []walsender.Standby
	var slots []walarchive.Slot
	if c.relay != nil {
		standbys, slots = c.relay.Standbys(), c.relay.Slots()
	}
	var flushed uint64
	if c.status != nil {
		if st, ok := c.status(); ok {
			flushed = st.Flushed
		}
	}
	ch.gauge(relayStandbys, float64(len(standbys)))
	byName := map[string]*standbyLags{}
	var names []string
	for _, s := range standbys {
		name := labelValue(s.ApplicationName)
		l, ok := byName[name]
		if !ok {
			l = &standbyLags{-1, -1, -1, -1}
			byName[name] = l
			names = append(names, name)
		}
		worse(&l.flushBytes, behind(flushed, s.Flush))
		worse(&l.replayBytes, behind(flushed, s.Replay))
		worse(&l.flushSeconds, s.FlushLag.Seconds())
		worse(&l.replaySeconds, s.ReplayLag.Seconds())
	}
	for _, name := range names {
		l := byName[name]
		known(ch, relayFlushLagBytes, l.flushBytes, name)
		known(ch, relayReplayLagBytes, l.replayBytes, name)
		known(ch, relayFlushLagSeconds, l.flushSeconds, name)
		known(ch, relayReplayLagSeconds, l.replaySeconds, name)
	}
	ch.gauge(relaySlots, float64(len(slots)))
	for _, s := range slots {
		retained := 0.0
		if s.RestartLSN != 0 {
			retained = behind(flushed, s.RestartLSN)
		}
		ch.gauge(relaySlotRetained, retained, labelValue(s.Name))
	}
}

// behind is how far lsn is behind the archive's durable position; -1
// when the standby has not reported it (0), 0 when it is not behind (it
// cannot be ahead of what pgverbs sent but for a timeline switch).
func behind(flushed, lsn uint64) float64 {
	switch {
	case lsn == 0:
		return -1
	case lsn >= flushed:
		return 0
	}
	return float64(flushed - lsn)
}

// worse keeps in *worst the larger of it and v.
func worse(worst *float64, v float64) {
	if v > *worst {
		*worst = v
	}
}

// known sends v unless it is unknown (negative).
func known(ch constMetrics, d *prometheus.Desc, v float64, label string) {
	if v >= 0 {
		ch.gauge(d, v, label)
	}
}

// labelValue is s as PostgreSQL keeps an application_name, printable
// ASCII with anything else as '?', at most NAMEDATALEN-1 bytes: a label
// value must be UTF-8 (else the metric could not be made), and a client
// picks the name.
func labelValue(s string) string {
	b := []byte(s)
	if len(b) > 63 {
		b = b[:63]
	}
	for i, c := range b {
		if c < 32 || c > 126 {
			b[i] = '?'
		}
	}
	return string(b)
}
