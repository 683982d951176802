package proxy

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// writeOutcome writes a command's rows and CommandComplete, each value in
// the format the client asked for (formats nil: text).
func (e *engine) writeOutcome(c *execConn, cols []commands.Column, formats []int16, out *commands.Outcome, withDescription bool) error {
	if len(cols) > 0 && withDescription {
		e.p.writeClient(rowDescription(cols, formats))
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
					return e.fail(c, err)
				}
				dr.Values[i] = b
			} else {
				dr.Values[i] = []byte(*v)
			}
		}
		b, _ := dr.Encode(nil)
		e.p.writeClient(b)
	}
	b, _ := (&pgproto3.CommandComplete{CommandTag: []byte(out.Tag)}).Encode(nil)
	e.p.writeClient(b)
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
	case pgwire.BoolOID:
		return "f"
	case pgwire.PgLSNOID:
		return "0/0"
	case pgwire.TimestamptzOID:
		return "2000-01-01 00:00:00+00"
	}
	return "0"
}

// pgEpoch is where PostgreSQL's binary timestamps count from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// binaryValue encodes a text value of a command's result column in the
// binary format of its type. Commands return a few types only.
func binaryValue(oid uint32, text string) ([]byte, error) {
	switch oid {
	case pgwire.TextOID, pgwire.VarcharOID, pgwire.NameOID: // binary is the bytes
		return []byte(text), nil
	case pgwire.BoolOID:
		if text == "t" {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	case pgwire.Int4OID:
		n, err := strconv.ParseInt(text, 10, 32)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint32(nil, uint32(n)), nil
	case pgwire.Int8OID:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
	case pgwire.Float8OID:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case pgwire.PgLSNOID: // X/Y hex halves of a uint64
		hi, lo, ok := strings.Cut(text, "/")
		h, err1 := strconv.ParseUint(hi, 16, 32)
		l, err2 := strconv.ParseUint(lo, 16, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("invalid pg_lsn %q", text)
		}
		return binary.BigEndian.AppendUint64(nil, h<<32|l), nil
	case pgwire.TimestamptzOID: // microseconds since 2000-01-01 00:00 UTC
		t, err := time.Parse("2006-01-02 15:04:05.999999-07", text)
		if err != nil {
			return nil, fmt.Errorf("invalid timestamptz %q", text)
		}
		return binary.BigEndian.AppendUint64(nil, uint64(t.Sub(pgEpoch).Microseconds())), nil
	}
	return nil, pgerr.New(pgerr.FeatureNotSupported, "binary format is not supported for result type %d of a pgverbs command", oid)
}

// rowDescription encodes the RowDescription of a command's columns.
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
