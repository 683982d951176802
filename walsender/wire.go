package walsender

import (
	"encoding/binary"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// column is one field of a RowDescription.
type column struct {
	name   string
	oid    uint32
	typlen int16
	typmod int32
}

// Columns as the walsender's result sets describe them
// (TupleDescInitBuiltinEntry: typmod -1, the type's own length).
func textCol(name string) column { return column{name, pgwire.TextOID, -1, -1} }
func int4Col(name string) column { return column{name, pgwire.Int4OID, 4, -1} }
func int8Col(name string) column { return column{name, pgwire.Int8OID, 8, -1} }

// message starts a message of type t in b; finish fills in its length.
func message(b []byte, t pgwire.Backend) ([]byte, int) {
	b = append(b, byte(t), 0, 0, 0, 0)
	return b, len(b) - 4
}

func finish(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at))
	return b
}

// appendRowDescription appends a RowDescription for cols.
func appendRowDescription(b []byte, cols ...column) []byte {
	b, at := message(b, pgwire.RowDescription)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, c.name...)
		b = append(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0) // table
		b = binary.BigEndian.AppendUint16(b, 0) // attnum
		b = binary.BigEndian.AppendUint32(b, c.oid)
		b = binary.BigEndian.AppendUint16(b, uint16(c.typlen))
		b = binary.BigEndian.AppendUint32(b, uint32(c.typmod))
		b = binary.BigEndian.AppendUint16(b, 0) // text format
	}
	return finish(b, at)
}

// appendDataRow appends a DataRow; a nil value is NULL.
func appendDataRow(b []byte, vals ...[]byte) []byte {
	b, at := message(b, pgwire.DataRow)
	b = binary.BigEndian.AppendUint16(b, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return finish(b, at)
}

func appendCommandComplete(b []byte, tag string) []byte {
	b, at := message(b, pgwire.CommandComplete)
	b = append(b, tag...)
	b = append(b, 0)
	return finish(b, at)
}

func appendReadyForQuery(b []byte) []byte {
	return append(b, byte(pgwire.ReadyForQuery), 0, 0, 0, 5, pgwire.TxIdle)
}

// appendCopyBoth appends CopyBothResponse: text format, no columns, as
// the walsender sends it.
func appendCopyBoth(b []byte) []byte {
	return append(b, byte(pgwire.CopyBothResponse), 0, 0, 0, 7, 0, 0, 0)
}

func appendCopyDone(b []byte) []byte {
	return append(b, byte(pgwire.BackendCopyDone), 0, 0, 0, 4)
}

// pgEpoch is PostgreSQL's timestamp epoch.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(t time.Time) uint64 { return uint64(t.Sub(pgEpoch).Microseconds()) }

func fromPGTime(us int64) time.Time { return pgEpoch.Add(time.Duration(us) * time.Microsecond) }

// appendXLogDataHeader appends the CopyData header and the 'w' header of
// an XLogData message carrying n bytes of WAL from start; the caller
// appends the bytes.
func appendXLogDataHeader(b []byte, start, walEnd uint64, now time.Time, n int) []byte {
	b = append(b, byte(pgwire.BackendCopyData))
	b = binary.BigEndian.AppendUint32(b, uint32(4+1+24+n))
	b = append(b, 'w')
	b = binary.BigEndian.AppendUint64(b, start)
	b = binary.BigEndian.AppendUint64(b, walEnd)
	return binary.BigEndian.AppendUint64(b, pgTime(now))
}

// appendKeepalive appends a primary keepalive ('k').
func appendKeepalive(b []byte, walEnd uint64, now time.Time, reply bool) []byte {
	b = append(b, byte(pgwire.BackendCopyData), 0, 0, 0, 4+18, 'k')
	b = binary.BigEndian.AppendUint64(b, walEnd)
	b = binary.BigEndian.AppendUint64(b, pgTime(now))
	r := byte(0)
	if reply {
		r = 1
	}
	return append(b, r)
}
