package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// The engine runs pgverbs commands inside the relayed stream. It runs on the
// client-reading goroutine: while a command runs, no further client message
// is read, so the client's view stays strictly ordered. See
// docs/ARCHITECTURE.md, "Commands inside the stream".

// internalName names the prepared statement and portal the engine uses for
// its own SQL. It is closed before each use, so a leftover never collides,
// and it never touches the client's unnamed statement or portal.
const internalName = "pgverbs_internal"

// engine holds the per-session state of commands prepared through the
// extended protocol.
type engine struct {
	stmts   map[string]commands.Prepared
	portals map[string]portal
}

// portal is a command bound by the client. It lives until the transaction
// it was bound in ends, as the server's portals do.
type portal struct {
	prep  commands.Prepared
	epoch uint64
	// formats are the result format codes the client asked for in Bind.
	formats []int16
}

// lookupPortal returns the live command portal of that name.
func (s *session) lookupPortal(name string) (portal, bool) {
	p, ok := s.eng.portals[name]
	if !ok {
		return portal{}, false
	}
	if p.epoch != s.t.txEpoch() {
		delete(s.eng.portals, name)
		return portal{}, false
	}
	return p, true
}

// intercept looks at a client message before it is forwarded. handled means
// the engine consumed it (and answered it); otherwise it is forwarded.
func (s *session) intercept(typ byte, total int) (handled bool, err error) {
	switch typ {
	case 'Q', 'P':
	case 'B', 'D', 'E', 'C':
		if len(s.eng.stmts) == 0 && len(s.eng.portals) == 0 {
			return false, nil
		}
	default:
		return false, nil
	}
	var msg []byte
	if total <= s.cr.Size() {
		if msg, err = s.cr.Peek(total); err != nil {
			return false, err
		}
	} else {
		// Too big to peek: read it whole, and forward it from memory when
		// it is not ours.
		msg = make([]byte, total)
		if _, err := io.ReadFull(s.cr, msg); err != nil {
			return false, err
		}
		s.bigMsg = true
		defer func() {
			s.bigMsg = false
			if err == nil && !handled {
				s.t.sent(typ)
				_, err = s.bw.Write(msg)
				handled = true
			}
		}()
	}
	body := msg[5:]
	// Malformed bodies (a missing NUL) are not ours: the server rejects
	// them in its own words.
	switch typ {
	case 'Q':
		sql, _, ok := cutCString(body)
		if !ok || !s.srv.commands.MayContain(sql) {
			return false, nil
		}
		if _, _, copyIn := s.t.state(); copyIn {
			return false, nil
		}
		stmts, found := s.srv.commands.Match(string(sql))
		if !found {
			return false, nil
		}
		s.consume(total)
		return true, s.simpleQuery(string(sql), stmts)
	case 'P':
		name, rest, ok1 := cutCString(body)
		sql, rest, ok2 := cutCString(rest)
		if ok1 && len(name) == 0 {
			// A new unnamed statement replaces a command prepared unnamed.
			delete(s.eng.stmts, "")
		}
		if !ok1 || !ok2 || !s.srv.commands.MayContain(sql) {
			return false, nil
		}
		stmts, found := s.srv.commands.Match(string(sql))
		if !found {
			return false, nil
		}
		s.consume(total)
		return true, s.extParse(string(name), stmts, nparams(rest))
	case 'B':
		portal, rest, ok1 := cutCString(body)
		stmt, rest, ok2 := cutCString(rest)
		if !ok1 || !ok2 {
			return false, nil
		}
		prep, ok := s.eng.stmts[string(stmt)]
		if !ok {
			delete(s.eng.portals, string(portal))
			return false, nil
		}
		s.consume(total)
		return true, s.extBind(string(portal), prep, rest)
	case 'D', 'C':
		if len(body) < 2 {
			return false, nil
		}
		kind, name := body[0], string(cstring(body[1:]))
		var p portal
		var ok bool
		if kind == 'S' {
			p.prep, ok = s.eng.stmts[name]
		} else {
			p, ok = s.lookupPortal(name)
		}
		if !ok {
			return false, nil
		}
		s.consume(total)
		if typ == 'D' {
			return true, s.extDescribe(kind, p)
		}
		return true, s.extClose(kind, name)
	case 'E':
		p, ok := s.lookupPortal(string(cstring(body)))
		if !ok {
			return false, nil
		}
		s.consume(total)
		return true, s.extExecute(p)
	}
	return false, nil
}

// consume drops the message just handled from the client reader, unless
// it was read whole already.
func (s *session) consume(total int) {
	if !s.bigMsg {
		_, _ = s.cr.Discard(total)
	}
}

// cutCString splits a NUL-terminated string off the front of b.
func cutCString(b []byte) (str, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// nparams returns the parameter type count of a Parse body tail.
func nparams(tail []byte) int {
	if len(tail) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(tail))
}

// acquire takes the backend over from the relay: it waits until every reply
// owed to the client has been forwarded, then routes backend messages to
// the engine. The caller must call release.
func (s *session) acquire() error {
	pending, needFlush := s.t.outstanding()
	if needFlush {
		// The server holds extended-protocol replies until Sync or Flush.
		s.bw.Write(flushMsg)
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	if pending {
		if err := s.t.waitDrained(); err != nil {
			return err
		}
	}
	s.t.execMode.Store(true)
	for s.t.writing.Load() {
		runtime.Gosched()
	}
	return nil
}

// release hands the backend back to the relay. Messages that arrived for
// the engine but were not read (asynchronous ones) go to the client first.
func (s *session) release() error {
	t := s.t
	t.mu.Lock()
	left := t.execQ
	t.execQ = nil
	for _, m := range left {
		s.cw.Write(m.msg)
	}
	err := s.cw.Flush()
	t.execMode.Store(false)
	t.mu.Unlock()
	return err
}

var (
	flushMsg = []byte{'H', 0, 0, 0, 4}
	syncMsg  = []byte{'S', 0, 0, 0, 4}
)

// execConn implements commands.Conn over the acquired backend.
type execConn struct {
	s *session
	// failed is set once the server reported an error: it now discards
	// everything until Sync.
	failed bool
}

func (c *execConn) User() string     { return c.s.user }
func (c *execConn) Database() string { return c.s.database }

func (c *execConn) Notice(severity, message, detail string) {
	n := pgproto3.NoticeResponse{Severity: severity, SeverityUnlocalized: severity, Code: "00000", Message: message, Detail: detail}
	b, _ := n.Encode(nil)
	c.s.cw.Write(b)
	// Progress notices of long commands must reach psql as they happen.
	_ = c.s.cw.Flush()
}

// Exec runs one statement on the backend with the internal prepared
// statement and portal, and collects its result.
func (c *execConn) Exec(ctx context.Context, sql string, args ...*string) (*commands.Result, error) {
	if c.failed {
		return nil, errors.New("engine: Exec after a server error")
	}
	var buf []byte
	buf, _ = (&pgproto3.Close{ObjectType: 'S', Name: internalName}).Encode(buf)
	buf, _ = (&pgproto3.Close{ObjectType: 'P', Name: internalName}).Encode(buf)
	buf, _ = (&pgproto3.Parse{Name: internalName, Query: sql}).Encode(buf)
	params := make([][]byte, len(args))
	for i, a := range args {
		if a != nil {
			params[i] = []byte(*a)
		}
	}
	buf, _ = (&pgproto3.Bind{DestinationPortal: internalName, PreparedStatement: internalName, Parameters: params}).Encode(buf)
	buf, _ = (&pgproto3.Describe{ObjectType: 'P', Name: internalName}).Encode(buf)
	buf, _ = (&pgproto3.Execute{Portal: internalName}).Encode(buf)
	buf = append(buf, flushMsg...)
	if _, err := c.s.bw.Write(buf); err != nil {
		return nil, err
	}
	if err := c.s.bw.Flush(); err != nil {
		return nil, err
	}
	res := &commands.Result{}
	if _, err := c.readReplies(1, res); err != nil {
		return nil, err
	}
	return res, nil
}

// ExecBatch pipelines statements: all are sent with one Flush and their
// replies read afterwards. After an error the server skips the rest (it
// discards until Sync), so replies stop there.
func (c *execConn) ExecBatch(ctx context.Context, sqls []string) (int, error) {
	if c.failed {
		return -1, errors.New("engine: ExecBatch after a server error")
	}
	var buf []byte
	for _, sql := range sqls {
		buf, _ = (&pgproto3.Close{ObjectType: 'S', Name: internalName}).Encode(buf)
		buf, _ = (&pgproto3.Close{ObjectType: 'P', Name: internalName}).Encode(buf)
		buf, _ = (&pgproto3.Parse{Name: internalName, Query: sql}).Encode(buf)
		buf, _ = (&pgproto3.Bind{DestinationPortal: internalName, PreparedStatement: internalName}).Encode(buf)
		buf, _ = (&pgproto3.Execute{Portal: internalName}).Encode(buf)
	}
	buf = append(buf, flushMsg...)
	if _, err := c.s.bw.Write(buf); err != nil {
		return -1, err
	}
	if err := c.s.bw.Flush(); err != nil {
		return -1, err
	}
	return c.readReplies(len(sqls), nil)
}

// readReplies reads the replies to n statements sent by Exec or ExecBatch,
// up to the first error, collecting the last statement's rows into res
// when it is not nil. It returns how many statements completed.
func (c *execConn) readReplies(n int, res *commands.Result) (done int, err error) {
	for done < n {
		m, err := c.s.t.next()
		if err != nil {
			return done, err
		}
		switch m.typ {
		case '1', '2', '3', 'n':
		case 'T':
			if res == nil {
				break
			}
			var rd pgproto3.RowDescription
			if err := rd.Decode(m.msg[5:]); err != nil {
				return done, err
			}
			for _, f := range rd.Fields {
				res.Fields = append(res.Fields, string(f.Name))
			}
		case 'D':
			if res == nil {
				break
			}
			var dr pgproto3.DataRow
			if err := dr.Decode(m.msg[5:]); err != nil {
				return done, err
			}
			row := make([][]byte, len(dr.Values))
			for i, v := range dr.Values {
				if v != nil {
					row[i] = append([]byte{}, v...)
				}
			}
			res.Rows = append(res.Rows, row)
		case 'C', 'I':
			if res != nil && m.typ == 'C' {
				res.Tag = string(cstring(m.msg[5:]))
			}
			done++
		case 'E':
			c.failed = true
			return done, serverError(m.msg)
		case 'G':
			// COPY FROM STDIN inside a command cannot get data: abort it.
			c.s.bw.Write(copyFailMsg("COPY FROM STDIN is not supported inside a pgverbs command"))
			c.s.bw.Write(flushMsg)
			if err := c.s.bw.Flush(); err != nil {
				return done, err
			}
		default:
			c.s.forwardAsync(m)
		}
	}
	return done, nil
}

// forwardAsync passes a message the engine does not consume to the client:
// notices, notifications and parameter changes.
func (s *session) forwardAsync(m execMsg) {
	switch m.typ {
	case 'N', 'A', 'S':
		s.cw.Write(m.msg)
	default:
		s.log.Debug("engine dropped unexpected backend message", zap.String("type", string(m.typ)))
	}
}

func copyFailMsg(reason string) []byte {
	b, _ := (&pgproto3.CopyFail{Message: reason}).Encode(nil)
	return b
}

func serverError(msg []byte) *commands.ServerError {
	var er pgproto3.ErrorResponse
	_ = er.Decode(msg[5:])
	return &commands.ServerError{Raw: msg, Code: er.Code, Message: er.Message}
}

// abortSQL is the statement the engine runs to put the server's transaction
// into the failed state when a command fails on the proxy's side, so that
// the client's transaction behaves as if the server had raised the error.
const abortSQL = `DO $pgverbs$ BEGIN RAISE EXCEPTION 'pgverbs command failed'; END $pgverbs$`

// fail reports a command's error to the client and makes sure the server's
// transaction is failed too: a server error already did that; for an error
// of the proxy's own, a failing statement does it and its error is dropped.
func (s *session) fail(c *execConn, err error) error {
	var se *commands.ServerError
	if errors.As(err, &se) {
		s.cw.Write(se.Raw)
		return nil
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		if errors.Is(err, errBackendGone) {
			return err
		}
		s.log.Error("command failed", zap.Error(err))
		pe = pgerr.New(pgerr.InternalError, "pgverbs internal error: %v", err)
	}
	if !c.failed {
		if _, aerr := c.Exec(context.Background(), abortSQL); aerr == nil {
			return errors.New("engine: abort statement did not fail")
		} else if !errors.As(aerr, &se) {
			return aerr
		}
	}
	s.cw.Write(pe.AppendWire(nil))
	return nil
}

// simpleQuery runs a Query message that contains at least one command. The
// statements run in order on the backend through the extended protocol, in
// one implicit transaction ended by a single Sync, so the whole string is
// atomic as PostgreSQL makes a multi-statement query; the client sees the
// replies a simple query gives.
func (s *session) simpleQuery(sql string, stmts []commands.Statement) error {
	if err := s.acquire(); err != nil {
		return err
	}
	c := &execConn{s: s}
	ctx := context.Background()
	preps, err := parseAll(sql, stmts)
	if err == nil && len(stmts) > 1 {
		for _, p := range preps {
			if _, ok := p.(commands.Standalone); ok {
				err = errInBlock(commandName(p))
			}
		}
	}
	if err != nil {
		if err := s.fail(c, err); err != nil {
			return err
		}
	}
	for i, st := range stmts {
		if c.failed {
			break
		}
		var err error
		if st.Command == nil {
			err = s.relayStatement(c, st.SQL)
		} else {
			err = s.runCommand(ctx, c, preps[i])
		}
		if err != nil {
			return err
		}
	}
	if err := s.syncEngine(); err != nil {
		return err
	}
	return s.release()
}

// parseAll parses every statement of a query string before any runs, as
// PostgreSQL does: a syntax error anywhere means nothing runs. Ordinary
// statements get a raw parse by pg_query (PostgreSQL's grammar, no
// catalog access, so a statement may refer to a table an earlier one
// creates); commands are parsed by their own grammar. Error positions are
// made relative to the whole string.
func parseAll(sql string, stmts []commands.Statement) ([]commands.Prepared, error) {
	preps := make([]commands.Prepared, len(stmts))
	for i, st := range stmts {
		before := int32(utf8.RuneCountInString(sql[:st.Offset]))
		if st.Command == nil {
			if _, err := pg_query.Parse(st.SQL); err != nil {
				e := pgerr.New(pgerr.SyntaxError, "%s", err.Error())
				var perr *parser.Error
				if errors.As(err, &perr) && perr.Cursorpos > 0 {
					e.Position = int32(perr.Cursorpos) + before
				}
				return nil, e
			}
			continue
		}
		prep, err := st.Command.Parse(st.SQL)
		if err != nil {
			var pe *pgerr.Error
			if errors.As(err, &pe) && pe.Position > 0 {
				pe.Position += before
			}
			return nil, err
		}
		preps[i] = prep
	}
	return preps, nil
}

// errInBlock is PostgreSQL's refusal of VACUUM and the like in a
// transaction block, for standalone commands.
func errInBlock(what string) *pgerr.Error {
	return &pgerr.Error{Severity: pgerr.SeverityError, Code: pgerr.ActiveSQLTransaction,
		Message: what + " cannot run inside a transaction block"}
}

// execute runs a prepared command. Standalone commands (which do their
// work on the proxy's own connections) are refused inside a transaction
// block, and get a context that a cancel request or the client leaving
// cancels.
func (s *session) execute(c *execConn, prep commands.Prepared) (*commands.Outcome, error) {
	if _, ok := prep.(commands.Standalone); !ok {
		return prep.Execute(context.Background(), c)
	}
	if status, _, _ := s.t.state(); status != 'I' {
		return nil, errInBlock(commandName(prep))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.cmdCancel.Store(&cancel)
	defer s.cmdCancel.Store(nil)
	stop := s.watchClient(cancel)
	defer stop()
	return prep.Execute(ctx, c)
}

// commandName names a prepared command in messages.
func commandName(prep commands.Prepared) string {
	if n, ok := prep.(interface{ CommandName() string }); ok {
		return n.CommandName()
	}
	return "this command"
}

// watchClient calls cancel if the client goes away while a standalone
// command runs. The engine does not read the client meanwhile, so a
// goroutine may wait on the reader; stop wakes it with a read deadline and
// waits for it, leaving whatever the client sent buffered.
func (s *session) watchClient(cancel func()) (stop func()) {
	var stopping atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := s.cr.Peek(1); err != nil && !stopping.Load() {
			s.log.Debug("client left during a command; cancelling it", zap.Error(err))
			cancel()
		}
	}()
	return func() {
		stopping.Store(true)
		_ = s.client.SetReadDeadline(time.Now())
		<-done
		_ = s.client.SetReadDeadline(time.Time{})
	}
}

// runCommand runs one parsed command of a simple query, writing its
// replies.
func (s *session) runCommand(ctx context.Context, c *execConn, prep commands.Prepared) error {
	out, err := s.execute(c, prep)
	if err != nil {
		return s.fail(c, err)
	}
	return s.writeOutcome(c, prep.Columns(), nil, out, true)
}

// writeOutcome writes a command's rows and CommandComplete, each value in
// the format the client asked for (formats nil: text).
func (s *session) writeOutcome(c *execConn, cols []commands.Column, formats []int16, out *commands.Outcome, withDescription bool) error {
	if len(cols) > 0 && withDescription {
		s.cw.Write(rowDescription(cols, formats))
	}
	for _, r := range out.Rows {
		dr := pgproto3.DataRow{Values: make([][]byte, len(r))}
		for i, v := range r {
			if v == nil {
				continue
			}
			if i < len(formats) && formats[i] == 1 {
				b, err := binaryValue(cols[i].TypeOID, *v)
				if err != nil {
					return s.fail(c, err)
				}
				dr.Values[i] = b
			} else {
				dr.Values[i] = []byte(*v)
			}
		}
		b, _ := dr.Encode(nil)
		s.cw.Write(b)
	}
	b, _ := (&pgproto3.CommandComplete{CommandTag: []byte(out.Tag)}).Encode(nil)
	s.cw.Write(b)
	return nil
}

// resultFormats expands Bind's result format codes to one per column, as
// the protocol defines: none means text, one applies to all.
func resultFormats(cols []commands.Column, codes []int16) ([]int16, error) {
	out := make([]int16, len(cols))
	switch len(codes) {
	case 0:
	case 1:
		for i := range out {
			out[i] = codes[0]
		}
	default:
		if len(codes) != len(cols) {
			return nil, pgerr.New(pgerr.ProtocolViolation, "bind message has %d result formats but query has %d columns", len(codes), len(cols))
		}
		copy(out, codes)
	}
	for i, f := range out {
		if f != 0 && f != 1 {
			return nil, pgerr.New(pgerr.ProtocolViolation, "unsupported format code: %d", f)
		}
		if f == 1 {
			if _, err := binaryValue(cols[i].TypeOID, zeroText(cols[i].TypeOID)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// zeroText is a valid text value of the type, to check binary support.
func zeroText(oid uint32) string {
	switch oid {
	case 16:
		return "f"
	case 3220:
		return "0/0"
	}
	return "0"
}

// binaryValue encodes a text value of a command's result column in the
// binary format of its type. Commands return a few types only.
func binaryValue(oid uint32, text string) ([]byte, error) {
	switch oid {
	case 25, 1043, 19: // text, varchar, name: binary is the bytes
		return []byte(text), nil
	case 16:
		if text == "t" {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	case 23:
		n, err := strconv.ParseInt(text, 10, 32)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint32(nil, uint32(n)), nil
	case 20:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
	case 701:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case 3220: // pg_lsn: X/Y hex halves of a uint64
		hi, lo, ok := strings.Cut(text, "/")
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("invalid pg_lsn %q", text)
		}
		return binary.BigEndian.AppendUint64(nil, h<<32|l), nil
	}
	return nil, pgerr.New(pgerr.FeatureNotSupported, "binary format is not supported for result type %d of a pgverbs command", oid)
}

func rowDescription(cols []commands.Column, formats []int16) []byte {
	rd := pgproto3.RowDescription{}
	for i, c := range cols {
		fd := pgproto3.FieldDescription{
			Name: []byte(c.Name), DataTypeOID: c.TypeOID, DataTypeSize: -1, TypeModifier: -1,
		}
		if i < len(formats) {
			fd.Format = formats[i]
		}
		rd.Fields = append(rd.Fields, fd)
	}
	b, _ := rd.Encode(nil)
	return b
}

// relayStatement runs a client's ordinary statement from a simple query
// that also holds commands, forwarding the replies a simple query gives.
func (s *session) relayStatement(c *execConn, sql string) error {
	var buf []byte
	buf, _ = (&pgproto3.Parse{Query: sql}).Encode(buf)
	buf, _ = (&pgproto3.Bind{}).Encode(buf)
	buf, _ = (&pgproto3.Describe{ObjectType: 'P'}).Encode(buf)
	buf, _ = (&pgproto3.Execute{}).Encode(buf)
	buf = append(buf, flushMsg...)
	if _, err := s.bw.Write(buf); err != nil {
		return err
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	for {
		m, err := s.t.next()
		if err != nil {
			return err
		}
		switch m.typ {
		case '1', '2', 'n':
		case 'C', 'I':
			s.cw.Write(m.msg)
			return nil
		case 'E':
			s.cw.Write(m.msg)
			c.failed = true
			return nil
		case 'G':
			s.bw.Write(copyFailMsg("COPY FROM STDIN cannot be combined with pgverbs commands in one query string"))
			s.bw.Write(flushMsg)
			if err := s.bw.Flush(); err != nil {
				return err
			}
		default:
			// RowDescription, DataRow, COPY OUT data, notices...
			s.cw.Write(m.msg)
		}
	}
}

// syncEngine ends the engine's implicit transaction with Sync and forwards
// the ReadyForQuery, which carries the true transaction status.
func (s *session) syncEngine() error {
	if _, err := s.bw.Write(syncMsg); err != nil {
		return err
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	for {
		m, err := s.t.next()
		if err != nil {
			return err
		}
		if m.typ == 'Z' {
			s.t.afterSync(m.msg[5])
			s.cw.Write(m.msg)
			return nil
		}
		s.forwardAsync(m)
	}
}

// extParse handles Parse of a command statement.
func (s *session) extParse(name string, stmts []commands.Statement, nparams int) error {
	return s.extStep(func(c *execConn) error {
		if err := s.refuseIfAborted(c); err != nil || c.failed {
			return err
		}
		if len(stmts) != 1 {
			return s.fail(c, pgerr.New(pgerr.SyntaxError, "cannot insert multiple commands into a prepared statement"))
		}
		if nparams > 0 {
			return s.fail(c, pgerr.New(pgerr.SyntaxError, "pgverbs commands take no parameters"))
		}
		prep, err := stmts[0].Command.Parse(stmts[0].SQL)
		if err != nil {
			return s.fail(c, err)
		}
		if s.eng.stmts == nil {
			s.eng.stmts = map[string]commands.Prepared{}
		}
		s.eng.stmts[name] = prep
		s.cw.Write([]byte{'1', 0, 0, 0, 4})
		return nil
	})
}

// extBind handles Bind of a command statement.
func (s *session) extBind(name string, prep commands.Prepared, rest []byte) error {
	return s.extStep(func(c *execConn) error {
		if err := s.refuseIfAborted(c); err != nil || c.failed {
			return err
		}
		var b pgproto3.Bind
		// Decode needs the names; rebuild a minimal body.
		body := append([]byte{0, 0}, rest...)
		if err := b.Decode(body); err != nil {
			return s.fail(c, pgerr.New(pgerr.ProtocolViolation, "invalid Bind message"))
		}
		if len(b.Parameters) > 0 {
			return s.fail(c, pgerr.New(pgerr.ProtocolViolation,
				"bind message supplies %d parameters, but prepared statement requires 0", len(b.Parameters)))
		}
		if s.eng.portals == nil {
			s.eng.portals = map[string]portal{}
		}
		formats, err := resultFormats(prep.Columns(), b.ResultFormatCodes)
		if err != nil {
			return s.fail(c, err)
		}
		s.eng.portals[name] = portal{prep: prep, epoch: s.t.txEpoch(), formats: formats}
		s.cw.Write([]byte{'2', 0, 0, 0, 4})
		return nil
	})
}

// extDescribe handles Describe of a command statement or portal.
func (s *session) extDescribe(kind byte, p portal) error {
	return s.extStep(func(c *execConn) error {
		if kind == 'S' {
			b, _ := (&pgproto3.ParameterDescription{}).Encode(nil)
			s.cw.Write(b)
		}
		if cols := p.prep.Columns(); len(cols) > 0 {
			s.cw.Write(rowDescription(cols, p.formats))
		} else {
			s.cw.Write([]byte{'n', 0, 0, 0, 4})
		}
		return nil
	})
}

// extClose handles Close of a command statement or portal.
func (s *session) extClose(kind byte, name string) error {
	return s.extStep(func(c *execConn) error {
		if kind == 'S' {
			delete(s.eng.stmts, name)
		} else {
			delete(s.eng.portals, name)
		}
		s.cw.Write([]byte{'3', 0, 0, 0, 4})
		return nil
	})
}

// extExecute handles Execute of a command portal.
func (s *session) extExecute(p portal) error {
	prep := p.prep
	return s.extStep(func(c *execConn) error {
		if err := s.refuseIfAborted(c); err != nil || c.failed {
			return err
		}
		out, err := s.execute(c, prep)
		if err != nil {
			return s.fail(c, err)
		}
		return s.writeOutcome(c, prep.Columns(), p.formats, out, false)
	})
}

// errAborted is refused like PostgreSQL refuses Parse, Bind and Execute of
// anything but transaction control in a failed transaction.
var errAborted = &pgerr.Error{Severity: pgerr.SeverityError, Code: pgerr.InFailedTransaction,
	Message: "current transaction is aborted, commands ignored until end of transaction block"}

// refuseIfAborted fails the step when the client's transaction is failed.
// It returns nil both when the step may go on and when it was refused
// (c.failed then tells).
func (s *session) refuseIfAborted(c *execConn) error {
	if status, _, _ := s.t.state(); status == 'E' {
		return s.fail(c, errAborted)
	}
	return nil
}

// extStep runs one extended-protocol step of a command with the backend
// acquired. Like the server, it does nothing while the server discards
// messages after an error; an error it reports starts such discarding.
func (s *session) extStep(step func(c *execConn) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	_, discarding, _ := s.t.state()
	if !discarding {
		c := &execConn{s: s}
		if err := step(c); err != nil {
			return err
		}
		if c.failed {
			s.t.setDiscarding()
		}
	}
	return s.release()
}
