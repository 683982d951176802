package walsender

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// Archive is what the walsender needs of the WAL archive
// (*walarchive.Manager).
type Archive interface {
	Position() (walarchive.Position, <-chan struct{}, bool)
	History(tli uint32) ([]byte, error)
	ReadSegment(tli uint32, segno uint64) (io.ReadCloser, error)
	SetDemand(standbys int)
	SetFeedback(f walarchive.Feedback)
	CreateSlot(name string, temporary, reserve bool, pid uint32) (walarchive.Slot, error)
	DropSlot(name string, pid uint32) error
	ReadSlot(name string) (walarchive.Slot, bool)
	AcquireSlot(name string, pid uint32) (walarchive.Slot, error)
	ReleaseSlot(name string, pid uint32)
	ReleaseSlots(pid uint32)
	AdvanceSlot(name string, flush uint64, tli uint32, xmin, catalogXmin uint32)
}

// DialFunc opens a physical replication connection to the upstream as
// user, for a command pgverbs passes on after the session's own upstream
// connection was closed.
type DialFunc func(ctx context.Context, user, applicationName string) (*pgconn.PgConn, error)

// Config is what a Server needs.
type Config struct {
	Archive Archive
	Dial    DialFunc
	Logger  *zap.Logger
	// Timeout is wal_sender_timeout: a standby silent for this long is
	// disconnected; half of it asks for a reply. 0: 60 s.
	Timeout time.Duration
}

// defaultTimeout is PostgreSQL's wal_sender_timeout.
const defaultTimeout = 60 * time.Second

// Server serves physical replication connections from the archive.
type Server struct {
	cfg Config
	log *zap.Logger

	mu       sync.Mutex
	standbys map[*standby]struct{}
	feedback walarchive.Feedback
	// dataDirMode is the upstream's data_directory_mode as last seen
	// (PostgreSQL's default until then), for when it is down.
	dataDirMode string
}

// NewServer returns a Server reading from cfg.Archive.
func NewServer(cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Server{cfg: cfg, log: log, standbys: map[*standby]struct{}{}, dataDirMode: "0700"}
}

// Active reports whether an archive runs: only then does pgverbs answer
// replication connections itself.
func (s *Server) Active() bool {
	_, _, ok := s.cfg.Archive.Position()
	return ok
}

// Session is one authenticated physical replication connection, handed
// over by the proxy after ReadyForQuery reached the client.
type Session struct {
	Client  net.Conn
	ClientR *bufio.Reader
	ClientW *bufio.Writer
	// Backend is the session's upstream connection, after authentication;
	// nil when the upstream was unreachable and pgverbs authenticated the
	// client itself.
	Backend  net.Conn
	BackendR *bufio.Reader
	BackendW *bufio.Writer
	User     string
	// ApplicationName and ClientAddr are what SHOW WAL STANDBYS shows.
	ApplicationName, ClientAddr string
	// PID is the process id the client was given in BackendKeyData.
	PID uint32
	// ServerMajor is the upstream's major version (result types follow
	// it: IDENTIFY_SYSTEM's timeline is int8 from 17).
	ServerMajor int
}

// maxMessage bounds a client message: replication commands and standby
// replies are small.
const maxMessage = 1 << 20

// conn is a session being served.
type conn struct {
	srv *Server
	s   *Session
	out []byte
}

// Serve answers the session's commands until it ends (the client leaves,
// ctx ends, a fatal error). It owns the session's connections and closes
// them.
func (s *Server) Serve(ctx context.Context, sess *Session) {
	c := &conn{srv: s, s: sess}
	defer func() {
		s.cfg.Archive.ReleaseSlots(sess.PID)
		c.closeBackend()
		sess.Client.Close()
	}()
	stop := context.AfterFunc(ctx, func() { _ = sess.Client.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		typ, body, err := readMessage(sess.ClientR, maxMessage)
		if err != nil {
			if !isClosed(err) && ctx.Err() == nil {
				s.log.Debug("replication connection ended", zap.Error(err))
			}
			return
		}
		switch pgwire.Frontend(typ) {
		case pgwire.Terminate:
			return
		case pgwire.Query:
			sql := strings.TrimRight(string(body), "\x00")
			if err := c.query(ctx, sql, body); err != nil {
				if pe := (*pgerr.Error)(nil); errors.As(err, &pe) && pe.Severity == pgerr.SeverityFatal {
					c.out = pe.AppendWire(c.out)
					_ = c.flush()
				}
				s.log.Debug("replication connection ended", zap.Error(err))
				return
			}
		default:
			// The walsender takes only simple queries; PostgreSQL
			// answers anything else with this FATAL.
			e := pgerr.NewFatal(pgerr.ProtocolViolation, "invalid frontend message type %d", typ)
			if pgwire.Frontend(typ) == pgwire.Parse {
				e = pgerr.NewFatal(pgerr.ProtocolViolation, "extended query protocol not supported in a replication connection")
			}
			c.out = e.AppendWire(c.out)
			_ = c.flush()
			return
		}
	}
}

// query answers one Query message: a command pgverbs serves, or one
// passed to the upstream. A returned error ends the connection.
func (c *conn) query(ctx context.Context, sql string, raw []byte) error {
	cmd, ok := parse(sql)
	if !ok {
		return c.forward(ctx, sql, raw)
	}
	var err error
	switch cmd.kind {
	case cmdIdentifySystem:
		err = c.identifySystem()
	case cmdTimelineHistory:
		err = c.timelineHistory(cmd.timeline)
	case cmdShow:
		if cmd.name == "data_directory_mode" && c.s.Backend != nil {
			// The upstream's own answer, ReadyForQuery included.
			return c.forwardShow(ctx, raw)
		}
		err = c.show(cmd.name)
	case cmdReadSlot:
		err = c.readSlot(cmd.name)
	case cmdCreateSlot:
		err = c.createSlot(cmd)
	case cmdDropSlot:
		err = c.dropSlot(cmd.name)
	case cmdStart:
		// A standby that streams from pgverbs needs nothing more from
		// the upstream: its walsender there goes, so that N standbys
		// cost the primary the archive's one.
		c.closeBackend()
		err = c.startReplication(ctx, cmd)
	}
	var pe *pgerr.Error
	if errors.As(err, &pe) && pe.Severity != pgerr.SeverityFatal {
		c.out = pe.AppendWire(c.out)
		err = nil
		// A walsender's error cleanup drops the session's temporary
		// slots and releases the one it used.
		c.srv.cfg.Archive.ReleaseSlots(c.s.PID)
	}
	if err != nil {
		return err
	}
	c.out = appendReadyForQuery(c.out)
	return c.flush()
}

// flush writes what was appended.
func (c *conn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.s.ClientW.Write(c.out)
	c.out = c.out[:0]
	if err == nil {
		err = c.s.ClientW.Flush()
	}
	return err
}

// position returns the archive's position; an archive stopped meanwhile
// ends the connection as a walsender whose server shuts down.
func (c *conn) position() (walarchive.Position, <-chan struct{}, error) {
	p, ch, ok := c.srv.cfg.Archive.Position()
	if !ok {
		return p, ch, pgerr.NewFatal(pgerr.AdminShutdown, "terminating walsender: the WAL archive of pgverbs stopped")
	}
	return p, ch, nil
}

func (c *conn) identifySystem() error {
	p, _, err := c.position()
	if err != nil {
		return err
	}
	tliCol := int4Col("timeline")
	if c.s.ServerMajor >= 17 {
		tliCol = int8Col("timeline")
	}
	c.out = appendRowDescription(c.out, textCol("systemid"), tliCol, textCol("xlogpos"), textCol("dbname"))
	c.out = appendDataRow(c.out, []byte(p.SystemID), []byte(strconv.FormatUint(uint64(p.Timeline), 10)),
		[]byte(walstream.FormatLSN(p.Flushed)), nil)
	c.out = appendCommandComplete(c.out, "IDENTIFY_SYSTEM")
	return nil
}

func (c *conn) timelineHistory(tli uint32) error {
	name := fmt.Sprintf("%08X.history", tli)
	// SendTimeLineHistory describes its columns by hand, typmod 0, before
	// it opens the file; the content became text in 15 (bytea before).
	contentCol := column{"content", pgwire.TextOID, -1, 0}
	if c.s.ServerMajor != 0 && c.s.ServerMajor < 15 {
		contentCol.oid = byteaOID
	}
	c.out = appendRowDescription(c.out, column{"filename", pgwire.TextOID, -1, 0}, contentCol)
	content, err := c.srv.cfg.Archive.History(tli)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return pgerr.New(pgerr.UndefinedFile, "could not open file \"pg_wal/%s\": No such file or directory", name)
		}
		return pgerr.New(pgerr.IOError, "could not read file \"pg_wal/%s\": %v", name, err)
	}
	c.out = appendDataRow(c.out, []byte(name), content)
	c.out = appendCommandComplete(c.out, "TIMELINE_HISTORY")
	return nil
}

// byteaOID is the type of TIMELINE_HISTORY's content before PostgreSQL 15.
const byteaOID = 17

func (c *conn) show(name string) error {
	var v string
	switch name {
	case "wal_segment_size":
		p, _, err := c.position()
		if err != nil {
			return err
		}
		v = formatBytes(p.SegmentSize)
	case "data_directory_mode":
		// The upstream's as last seen, while it is unreachable.
		c.srv.mu.Lock()
		v = c.srv.dataDirMode
		c.srv.mu.Unlock()
	}
	c.out = appendRowDescription(c.out, textCol(name))
	c.out = appendDataRow(c.out, []byte(v))
	c.out = appendCommandComplete(c.out, "SHOW")
	return nil
}

// formatBytes writes a size in bytes as SHOW does for a GUC in bytes: in
// the largest unit that divides it.
func formatBytes(n uint64) string {
	for _, u := range []struct {
		unit string
		size uint64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatUint(n/u.size, 10) + u.unit
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}

func (c *conn) readSlot(name string) error {
	if err := walarchive.CheckSlotName(name); err != nil {
		return err
	}
	c.out = appendRowDescription(c.out, textCol("slot_type"), textCol("restart_lsn"), int8Col("restart_tli"))
	s, ok := c.srv.cfg.Archive.ReadSlot(name)
	switch {
	case !ok:
		c.out = appendDataRow(c.out, nil, nil, nil)
	case s.RestartLSN == 0:
		c.out = appendDataRow(c.out, []byte("physical"), nil, nil)
	default:
		tli := s.RestartTLI
		if p, _, err := c.position(); err == nil {
			if h, err := c.history(p.Timeline); err == nil {
				tli = timelineOf(s.RestartLSN, p.Timeline, h)
			}
		}
		c.out = appendDataRow(c.out, []byte("physical"), []byte(walstream.FormatLSN(s.RestartLSN)),
			[]byte(strconv.FormatUint(uint64(tli), 10)))
	}
	c.out = appendCommandComplete(c.out, "READ_REPLICATION_SLOT")
	return nil
}

// history reads timeline tli's history (none for timeline 1).
func (c *conn) history(tli uint32) ([]historyEntry, error) {
	if tli <= 1 {
		return nil, nil
	}
	content, err := c.srv.cfg.Archive.History(tli)
	if err != nil {
		return nil, err
	}
	return parseHistory(content), nil
}

func (c *conn) createSlot(cmd command) error {
	s, err := c.srv.cfg.Archive.CreateSlot(cmd.name, cmd.temporary, cmd.reserve, c.s.PID)
	if err != nil {
		return err
	}
	c.out = appendRowDescription(c.out, textCol("slot_name"), textCol("consistent_point"), textCol("snapshot_name"), textCol("output_plugin"))
	// A physical slot's consistent point is its confirmed_flush, never set.
	c.out = appendDataRow(c.out, []byte(s.Name), []byte("0/0"), nil, nil)
	c.out = appendCommandComplete(c.out, "CREATE_REPLICATION_SLOT")
	return nil
}

func (c *conn) dropSlot(name string) error {
	if err := c.srv.cfg.Archive.DropSlot(name, c.s.PID); err != nil {
		return err
	}
	c.out = appendCommandComplete(c.out, "DROP_REPLICATION_SLOT")
	return nil
}

// forwardShow passes a SHOW to the upstream and remembers
// data_directory_mode's answer.
func (c *conn) forwardShow(ctx context.Context, raw []byte) error {
	var seen string
	err := c.relay(ctx, raw, func(typ byte, body []byte) {
		if typ == byte(pgwire.DataRow) && len(body) > 6 {
			if n := binary.BigEndian.Uint32(body[2:6]); int(n) <= len(body)-6 {
				seen = string(body[6 : 6+n])
			}
		}
	})
	if err == nil && seen != "" {
		c.srv.mu.Lock()
		c.srv.dataDirMode = seen
		c.srv.mu.Unlock()
	}
	return err
}

// forward passes a command pgverbs does not answer itself to the upstream
// and its replies back. Without an upstream connection it opens one as
// the session's user; when the upstream cannot be reached the client
// gets what a walsender would say for SQL, or 08006.
func (c *conn) forward(ctx context.Context, sql string, raw []byte) error {
	if c.s.Backend == nil {
		if err := c.redial(ctx); err != nil {
			if !isReplicationCommand(sql) {
				return c.queryError(pgerr.New(pgerr.FeatureNotSupported, "cannot execute SQL commands in WAL sender for physical replication"))
			}
			e := pgerr.New(pgerr.ConnectionFailure, "the upstream server is unreachable: %v", err)
			e.Detail = "pgverbs serves IDENTIFY_SYSTEM, TIMELINE_HISTORY, SHOW, the replication slot commands and START_REPLICATION from its WAL archive; other commands need the upstream."
			return c.queryError(e)
		}
	}
	return c.relay(ctx, raw, nil)
}

// queryError answers a query with an error and ReadyForQuery.
func (c *conn) queryError(e *pgerr.Error) error {
	c.out = e.AppendWire(c.out)
	c.out = appendReadyForQuery(c.out)
	return c.flush()
}

// isReplicationCommand is replication_scanner_is_replication_command:
// whether the first word is one of the walsender's commands.
func isReplicationCommand(sql string) bool {
	toks, ok := lex(sql)
	if !ok || len(toks) == 0 || toks[0].kind != 'i' || toks[0].quoted {
		return false
	}
	switch toks[0].text {
	case "identify_system", "base_backup", "show", "timeline_history", "create_replication_slot",
		"drop_replication_slot", "read_replication_slot", "start_replication":
		return true
	}
	return false
}

// relay sends the Query raw to the upstream and copies its replies to
// the client up to ReadyForQuery; see is shown each reply. A COPY the
// command starts (BASE_BACKUP's CopyOut, or a CopyBoth) is relayed in
// both directions until the connection ends.
func (c *conn) relay(ctx context.Context, raw []byte, see func(typ byte, body []byte)) error {
	if err := c.flush(); err != nil {
		return err
	}
	b := c.s.BackendW
	_ = b.WriteByte(byte(pgwire.Query))
	_ = binary.Write(b, binary.BigEndian, uint32(len(raw)+4))
	_, _ = b.Write(raw)
	if err := b.Flush(); err != nil {
		c.closeBackend()
		return pgerr.NewFatal(pgerr.ConnectionFailure, "lost the upstream connection: %v", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.s.Backend.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		typ, body, err := readMessage(c.s.BackendR, 1<<30)
		if err != nil {
			c.closeBackend()
			return pgerr.NewFatal(pgerr.ConnectionFailure, "lost the upstream connection: %v", err)
		}
		if see != nil {
			see(typ, body)
		}
		c.out = appendRaw(c.out, typ, body)
		switch pgwire.Backend(typ) {
		case pgwire.ReadyForQuery:
			return c.flush()
		case pgwire.CopyBothResponse, pgwire.CopyInResponse:
			if err := c.flush(); err != nil {
				return err
			}
			return c.pipe()
		}
		if c.s.BackendR.Buffered() == 0 || len(c.out) > 64<<10 {
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
}

// pipe copies bytes both ways until either side ends; the connection
// ends with it.
func (c *conn) pipe() error {
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(c.s.Backend, c.s.ClientR); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c.s.Client, c.s.BackendR); done <- struct{}{} }()
	<-done
	return io.EOF
}

// redial opens an upstream connection for a forwarded command.
func (c *conn) redial(ctx context.Context) error {
	if c.srv.cfg.Dial == nil {
		return errors.New("no way to reach the upstream")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pc, err := c.srv.cfg.Dial(dctx, c.s.User, c.s.ApplicationName)
	if err != nil {
		return err
	}
	h, err := pc.Hijack()
	if err != nil {
		return err
	}
	c.s.Backend = h.Conn
	c.s.BackendR = bufio.NewReaderSize(h.Conn, 64<<10)
	c.s.BackendW = bufio.NewWriterSize(h.Conn, 8<<10)
	return nil
}

// closeBackend ends the session's upstream connection, politely.
func (c *conn) closeBackend() {
	if c.s.Backend == nil {
		return
	}
	_ = c.s.Backend.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.s.Backend.Write([]byte{byte(pgwire.Terminate), 0, 0, 0, 4})
	c.s.Backend.Close()
	c.s.Backend, c.s.BackendR, c.s.BackendW = nil, nil, nil
}

// readMessage reads one message (type, body) of at most limit bytes.
func readMessage(r *bufio.Reader, limit uint32) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n-4 > limit {
		return 0, nil, fmt.Errorf("walsender: invalid message length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

func appendRaw(b []byte, typ byte, body []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)+4))
	return append(b, body...)
}

func isClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Standbys lists the standbys streaming from pgverbs, by start time.
func (s *Server) Standbys() []Standby {
	s.mu.Lock()
	out := make([]Standby, 0, len(s.standbys))
	for sb := range s.standbys {
		out = append(out, sb.snapshot())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}
