package walstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FormatLSN writes an LSN as PostgreSQL does (%X/%X).
func FormatLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

// ParseLSN reads an LSN as PostgreSQL writes it.
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("walstream: invalid LSN %q", s)
	}
	return h<<32 | l, nil
}

// System is what IDENTIFY_SYSTEM says.
type System struct {
	ID       string // the system identifier, as text (it is a uint64)
	Timeline uint32
	XLogPos  uint64 // the server's flush position (its replay position on a standby)
}

// IdentifySystem runs IDENTIFY_SYSTEM.
func (c *Conn) IdentifySystem(ctx context.Context) (System, error) {
	row, err := c.queryRow(ctx, "IDENTIFY_SYSTEM", 3)
	if err != nil {
		return System{}, err
	}
	tli, err := strconv.ParseUint(string(row[1]), 10, 32)
	if err != nil || tli == 0 {
		return System{}, fmt.Errorf("walstream: invalid timeline %q in IDENTIFY_SYSTEM", row[1])
	}
	pos, err := ParseLSN(string(row[2]))
	if err != nil {
		return System{}, err
	}
	return System{ID: string(row[0]), Timeline: uint32(tli), XLogPos: pos}, nil
}

// TimelineHistory fetches timeline tli's history file: its name and its
// bytes exactly as the server holds them.
func (c *Conn) TimelineHistory(ctx context.Context, tli uint32) (name string, content []byte, err error) {
	row, err := c.queryRow(ctx, fmt.Sprintf("TIMELINE_HISTORY %d", tli), 2)
	if err != nil {
		return "", nil, err
	}
	want := fmt.Sprintf("%08X.history", tli)
	if string(row[0]) != want {
		return "", nil, fmt.Errorf("walstream: TIMELINE_HISTORY %d returned %q", tli, row[0])
	}
	return want, row[1], nil
}

// Show runs SHOW name, which physical replication connections accept.
func (c *Conn) Show(ctx context.Context, name string) (string, error) {
	row, err := c.queryRow(ctx, "SHOW "+name, 1)
	if err != nil {
		return "", err
	}
	return string(row[0]), nil
}

// SegmentSize asks for wal_segment_size in bytes.
func (c *Conn) SegmentSize(ctx context.Context) (uint64, error) {
	v, err := c.Show(ctx, "wal_segment_size")
	if err != nil {
		return 0, err
	}
	n, err := ParseSize(v)
	if err != nil || n < 1<<20 || n > 1<<30 || n&(n-1) != 0 {
		return 0, fmt.Errorf("walstream: invalid wal_segment_size %q", v)
	}
	return n, nil
}

// ParseSize parses a memory setting as SHOW displays it ("16MB").
func ParseSize(v string) (uint64, error) {
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, err
	}
	switch unit {
	case "", "B":
	case "kB":
		n <<= 10
	case "MB":
		n <<= 20
	case "GB":
		n <<= 30
	default:
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	return n, nil
}

// Slot is what READ_REPLICATION_SLOT says of a physical slot.
type Slot struct {
	Exists     bool
	Type       string // "physical" or "logical"
	RestartLSN uint64 // 0 when the slot has reserved no WAL yet
	RestartTLI uint32
}

// ReadSlot runs READ_REPLICATION_SLOT (PostgreSQL 15+).
func (c *Conn) ReadSlot(ctx context.Context, name string) (Slot, error) {
	row, err := c.queryRow(ctx, "READ_REPLICATION_SLOT "+quoteIdent(name), 3)
	if err != nil {
		return Slot{}, err
	}
	if row[0] == nil {
		return Slot{}, nil
	}
	s := Slot{Exists: true, Type: string(row[0])}
	if row[1] != nil {
		if s.RestartLSN, err = ParseLSN(string(row[1])); err != nil {
			return Slot{}, err
		}
	}
	if row[2] != nil {
		tli, err := strconv.ParseUint(string(row[2]), 10, 32)
		if err != nil {
			return Slot{}, fmt.Errorf("walstream: invalid restart_tli %q", row[2])
		}
		s.RestartTLI = uint32(tli)
	}
	return s, nil
}

// CreateSlot creates a physical slot that reserves WAL at once, so that
// nothing from the server's current position on can be removed before
// streaming starts.
func (c *Conn) CreateSlot(ctx context.Context, name string, temporary bool) error {
	temp := ""
	if temporary {
		temp = " TEMPORARY"
	}
	_, err := c.Query(ctx, fmt.Sprintf("CREATE_REPLICATION_SLOT %s%s PHYSICAL RESERVE_WAL", quoteIdent(name), temp))
	return err
}

// DropSlot drops a slot.
func (c *Conn) DropSlot(ctx context.Context, name string) error {
	_, err := c.Query(ctx, "DROP_REPLICATION_SLOT "+quoteIdent(name))
	return err
}

// quoteIdent quotes a slot name for the replication grammar, which takes
// double-quoted identifiers as SQL does.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// TimelineEnd is what the server says when the timeline being streamed
// ended: the next timeline and where it starts. Zero when the stream ended
// for another reason (the client ended it).
type TimelineEnd struct {
	NextTimeline uint32
	NextStart    uint64
}

// StartReplication runs START_REPLICATION [SLOT s] PHYSICAL lsn TIMELINE
// tli. With a nil *TimelineEnd the stream has started: read it with
// ReadMessage. A non-nil one means tli ended exactly at lsn, so the server
// sent no WAL and told where the next timeline starts.
func (c *Conn) StartReplication(ctx context.Context, slot string, lsn uint64, tli uint32) (_ *TimelineEnd, err error) {
	cmd := "START_REPLICATION "
	if slot != "" {
		cmd += "SLOT " + quoteIdent(slot) + " "
	}
	cmd += fmt.Sprintf("PHYSICAL %s TIMELINE %d", FormatLSN(lsn), tli)
	stop := c.watch(ctx)
	defer func() { err = stop(err) }()
	if err := c.write('Q', append([]byte(cmd), 0)); err != nil {
		return nil, err
	}
	for {
		typ, body, err := c.readMessage()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'W':
			c.streaming = true
			return nil, nil
		case 'N', 'S':
		case 'E':
			failed := serverError(body)
			if _, err := c.results(); err != nil && !isServerError(err) {
				return nil, err
			}
			return nil, failed
		case 'T':
			// Starting exactly at the switch point: the end-of-timeline
			// result set without a copy.
			return c.timelineEnd(typ, body)
		default:
			return nil, fmt.Errorf("walstream: unexpected message %q in answer to START_REPLICATION", typ)
		}
	}
}

// timelineEnd reads the answer after a copy (or instead of one) up to
// ReadyForQuery: an optional result set (next_tli, next_tli_startpos) and
// the command tags. first is a message already read, or 0.
func (c *Conn) timelineEnd(first byte, body []byte) (*TimelineEnd, error) {
	var end *TimelineEnd
	var failed error
	typ := first
	for {
		if typ == 0 {
			var err error
			if typ, body, err = c.readMessage(); err != nil {
				return nil, err
			}
		}
		switch typ {
		case 'D':
			row, err := decodeRow(body)
			if err != nil {
				return nil, err
			}
			if len(row) >= 2 && row[0] != nil && row[1] != nil {
				tli, err1 := strconv.ParseUint(string(row[0]), 10, 32)
				pos, err2 := ParseLSN(string(row[1]))
				if err1 != nil || err2 != nil {
					return nil, fmt.Errorf("walstream: invalid end-of-timeline row %q", row)
				}
				end = &TimelineEnd{NextTimeline: uint32(tli), NextStart: pos}
			}
		case 'E':
			failed = serverError(body)
		case 'Z':
			c.streaming = false
			if failed != nil {
				return nil, failed
			}
			if end == nil {
				end = &TimelineEnd{}
			}
			return end, nil
		case 'T', 'C', 'N', 'S', 'c':
		case 'd':
			// WAL sent before the server saw our CopyDone: dropped, the
			// caller stopped wanting it.
		default:
			return nil, fmt.Errorf("walstream: unexpected message %q at the end of streaming", typ)
		}
		typ = 0
	}
}

func decodeRow(body []byte) ([][]byte, error) {
	if len(body) < 2 {
		return nil, errors.New("walstream: short DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	row := make([][]byte, n)
	for i := range row {
		if len(body) < 4 {
			return nil, errors.New("walstream: short DataRow")
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			continue
		}
		if int(l) > len(body) {
			return nil, errors.New("walstream: short DataRow")
		}
		row[i] = append([]byte{}, body[:l]...)
		body = body[l:]
	}
	return row, nil
}

func isServerError(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe)
}

// Message is one message of a running stream: *XLogData, *Keepalive or
// *CopyDone.
type Message interface{ message() }

// XLogData is a piece of WAL. Data is only valid until the next
// ReadMessage.
type XLogData struct {
	Start        uint64 // LSN of Data's first byte
	ServerWALEnd uint64 // the server's WAL end when it sent this
	SendTime     time.Time
	Data         []byte
}

// Keepalive is the server's primary keepalive message.
type Keepalive struct {
	ServerWALEnd   uint64
	SendTime       time.Time
	ReplyRequested bool
}

// CopyDone is the server ending the stream: the end of the timeline (or
// of the server). Answer with EndStreaming.
type CopyDone struct{}

func (*XLogData) message()  {}
func (*Keepalive) message() {}
func (*CopyDone) message()  {}

// pgEpoch is PostgreSQL's epoch, which the replication protocol's clock
// counts from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(us uint64) time.Time { return pgEpoch.Add(time.Duration(int64(us)) * time.Microsecond) }

// ReadMessage reads the next message of the stream. Set a read deadline
// on NetConn to wake up for status updates.
func (c *Conn) ReadMessage() (Message, error) {
	if !c.streaming {
		return nil, errors.New("walstream: not streaming")
	}
	for {
		typ, body, err := c.readMessage()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'd':
			if len(body) == 0 {
				return nil, errors.New("walstream: empty CopyData in the WAL stream")
			}
			switch body[0] {
			case 'w':
				if len(body) < 25 {
					return nil, errors.New("walstream: short XLogData message")
				}
				return &XLogData{
					Start:        binary.BigEndian.Uint64(body[1:]),
					ServerWALEnd: binary.BigEndian.Uint64(body[9:]),
					SendTime:     pgTime(binary.BigEndian.Uint64(body[17:])),
					Data:         body[25:],
				}, nil
			case 'k':
				if len(body) != 18 {
					return nil, errors.New("walstream: invalid keepalive message")
				}
				return &Keepalive{
					ServerWALEnd:   binary.BigEndian.Uint64(body[1:]),
					SendTime:       pgTime(binary.BigEndian.Uint64(body[9:])),
					ReplyRequested: body[17] != 0,
				}, nil
			default:
				return nil, fmt.Errorf("walstream: unexpected message type %q in the WAL stream", body[0])
			}
		case 'c':
			return &CopyDone{}, nil
		case 'C', 'Z':
			// A walsender that is shutting down may end the command
			// without a CopyDone this side reads first.
			c.streaming = false
			return nil, fmt.Errorf("walstream: the server ended streaming (%q before CopyDone)", typ)
		case 'E':
			c.streaming = false
			failed := serverError(body)
			// The walsender exits after an error; ReadyForQuery may not
			// come, so nothing more is read.
			return nil, failed
		case 'N', 'S':
		default:
			return nil, fmt.Errorf("walstream: unexpected message %q in the WAL stream", typ)
		}
	}
}

// SendStatus sends a standby status update. flush and apply are sent as
// given: 0 (InvalidXLogRecPtr) says "nothing flushed", and a receiver that
// has not fsynced must say so, or a primary could count it as a
// synchronous standby.
func (c *Conn) SendStatus(write, flush, apply uint64, now time.Time, replyRequested bool) error {
	return c.write('d', StandbyStatus(write, flush, apply, now, replyRequested))
}

// StandbyStatus builds the body of a standby status update ('r').
func StandbyStatus(write, flush, apply uint64, now time.Time, replyRequested bool) []byte {
	b := make([]byte, 0, 34)
	b = append(b, 'r')
	b = binary.BigEndian.AppendUint64(b, write)
	b = binary.BigEndian.AppendUint64(b, flush)
	b = binary.BigEndian.AppendUint64(b, apply)
	b = binary.BigEndian.AppendUint64(b, uint64(now.Sub(pgEpoch).Microseconds()))
	reply := byte(0)
	if replyRequested {
		reply = 1
	}
	return append(b, reply)
}

// SendFeedback sends hot-standby feedback ('h'): the oldest xmin and
// catalog_xmin the standbys behind this connection need, with their
// epochs; zeros tell the server there is none.
func (c *Conn) SendFeedback(now time.Time, xmin, xminEpoch, catalogXmin, catalogEpoch uint32) error {
	b := make([]byte, 0, 25)
	b = append(b, 'h')
	b = binary.BigEndian.AppendUint64(b, uint64(now.Sub(pgEpoch).Microseconds()))
	b = binary.BigEndian.AppendUint32(b, xmin)
	b = binary.BigEndian.AppendUint32(b, xminEpoch)
	b = binary.BigEndian.AppendUint32(b, catalogXmin)
	b = binary.BigEndian.AppendUint32(b, catalogEpoch)
	return c.write('d', b)
}

// EndStreaming answers the server's CopyDone, or ends the stream from
// this side, and reads what follows: after the end of a timeline, where
// the next one starts. The connection can run commands again afterwards.
func (c *Conn) EndStreaming(ctx context.Context) (_ *TimelineEnd, err error) {
	stop := c.watch(ctx)
	defer func() { err = stop(err) }()
	if err := c.write('c', nil); err != nil {
		return nil, err
	}
	return c.timelineEnd(0, nil)
}
