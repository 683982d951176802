package proxy

import (
	"crypto/tls"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
)

// What the server counts for its operators, read through stats.Source and
// the recorders' snapshots; package stats says how the counting stays off
// the hot path's costs.

// clientInfo is what SHOW PGVERBS CLIENTS says of a session that does not
// change once its startup is done. It is published whole, once, so that a
// scrape never reads fields the session's goroutine is still writing.
type clientInfo struct {
	pid                     uint32
	user, database, appName string
	tls                     bool
}

// publishInfo records the session's startup facts once authentication
// succeeded, and that it is idle, as the ReadyForQuery said.
func (s *session) publishInfo(p *startupPacket) {
	_, isTLS := s.client.(*tls.Conn)
	s.info.Store(&clientInfo{
		pid: s.backendPID, user: s.user, database: s.database,
		appName: p.param("application_name"), tls: isTLS,
	})
	s.st.SetState(stats.Idle)
}

// refuse counts the session's connection as refused for r, once: the
// first place that knows the reason counts it.
func (s *session) refuse(r stats.Refusal) {
	if !s.refusalCounted {
		s.refusalCounted = true
		s.srv.counters.Refuse(r)
	}
}

// refuseFatal counts the refusal a FATAL from the server during startup
// stands for: a failed login (class 28, invalid authorization) or another.
func (s *session) refuseFatal(body []byte) {
	if stats.OutcomeOf(responseCode(body)) == "28" {
		s.refuse(stats.RefusedAuth)
	} else {
		s.refuse(stats.RefusedOther)
	}
}

// Clients implements stats.Source.
func (s *Server) Clients() []stats.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]stats.Client, 0, len(s.sessions))
	for sess := range s.sessions {
		c := stats.Client{Addr: sess.remoteAddr, ConnectedAt: sess.connectedAt}
		if info := sess.info.Load(); info != nil {
			c.PID, c.User, c.Database = info.pid, info.user, info.database
			c.ApplicationName, c.TLS = info.appName, info.tls
			sess.st.Fill(&c)
		}
		out = append(out, c)
	}
	return out
}

// Totals implements stats.Source. The sessions that ended were folded
// into s.ended under the same lock that takes them out of s.sessions, so
// no session is counted twice or missed and the totals never go back.
func (s *Server) Totals() stats.Totals {
	s.mu.Lock()
	t := s.ended
	for sess := range s.sessions {
		t.AddSession(&sess.st)
	}
	s.mu.Unlock()
	s.counters.Fill(&t)
	return t
}

// ConnectLatency returns the backend connect latencies, in seconds.
func (s *Server) ConnectLatency() stats.HistogramSnapshot { return s.connectLatency.Snapshot() }

// CommandStats returns the commands run, by command and outcome.
func (s *Server) CommandStats() []stats.CommandStats { return s.cmds.Snapshot() }

// BackupStats returns what the base backups that succeeded recorded.
func (s *Server) BackupStats() stats.BackupStats { return s.backups.Snapshot() }

// MaxClientConns is the client connection limit in effect.
func (s *Server) MaxClientConns() int { return s.limits.Load().MaxClientConns }

// observeConnect records how long a backend dial took, failed or not.
func (s *Server) observeConnect(start time.Time) {
	s.connectLatency.ObserveDuration(time.Since(start))
}

// responseCode returns the SQLSTATE ('C' field) of an ErrorResponse body.
func responseCode(body []byte) string {
	for i := 0; i < len(body) && body[i] != 0; {
		j := i + 1
		for j < len(body) && body[j] != 0 {
			j++
		}
		if body[i] == 'C' {
			return string(body[i+1 : j])
		}
		i = j + 1
	}
	return ""
}

// pending is what one relay goroutine counted since it last published:
// plain fields, added to per message, published to the session's atomics
// once per read (publishUp, publishDown), so that a message costs no
// atomic operation.
type pending struct {
	bytes int
	// msgs counts queries sent (up) or transactions ended (down): a
	// ReadyForQuery that says idle ends one, whether an autocommit
	// statement or a block's COMMIT or ROLLBACK; those inside a block
	// end none.
	msgs   uint64
	ready  bool // a ReadyForQuery was received (down)
	status byte // of the last ReadyForQuery (down)
}

// publishUp publishes the client goroutine's counts. It runs before the
// queries are flushed to the server, so that Active is set before their
// ReadyForQuery can set the state it leaves.
func (s *session) publishUp() {
	u := &s.up
	if u.bytes == 0 {
		return
	}
	s.st.AddIn(u.bytes)
	s.st.Touch()
	if u.msgs > 0 {
		s.st.AddQueries(u.msgs)
		s.st.SetState(stats.Active)
	}
	*u = pending{}
}

// publishDown publishes the backend goroutine's counts.
func (s *session) publishDown() {
	d := &s.down
	if d.bytes == 0 {
		return
	}
	s.st.AddOut(d.bytes)
	s.st.AddTransactions(d.msgs)
	if d.ready {
		s.st.SetStatus(d.status)
	}
	*d = pending{}
}

// countUp counts a client message of total bytes the relay forwards.
func (p *pending) countUp(typ pgwire.Frontend, total int) {
	p.bytes += total
	if typ == pgwire.Query || typ == pgwire.Sync {
		p.msgs++
	}
}

// countDown counts a backend message of total bytes the relay forwards;
// msg is the whole message, or nil when it was streamed.
func (p *pending) countDown(typ pgwire.Backend, total int, msg []byte) {
	p.bytes += total
	if typ == pgwire.ReadyForQuery && len(msg) > pgwire.HeaderLen {
		p.ready = true
		p.status = msg[pgwire.HeaderLen]
		if p.status == pgwire.TxIdle {
			p.msgs++
		}
	}
}
