package backup

// The legacy BASE_BACKUP protocol of PostgreSQL 13 and 14 cannot be run
// here (only PostgreSQL 15 is installed), so these tests talk to a scripted
// PostgreSQL 14 walsender. What it sends, and in which order, follows the
// server and client sources of that era:
//
//   - replication/basebackup.c (perform_base_backup, SendXlogRecPtrResult,
//     SendBackupHeader, sendTablespace, sendDir, sendFile,
//     sendFileWithContent): start position result set, tablespace list
//     (tablespaces in pg_tblspc order, the base directory last with NULL
//     spcoid and spclocation, sizes in kB), one CopyOut per entry of that
//     list, do_pg_stop_backup, the manifest CopyOut, end position result
//     set. Each tar header is one CopyData message, file contents follow in
//     messages of at most 32 kB (TAR_SEND_SIZE), the padding to 512 bytes
//     is a message of its own, and no end-of-archive blocks are sent.
//   - replication/backup_manifest.c (SendBackupManifest): CopyOutResponse,
//     the manifest in BLCKSZ (8 kB) messages, CopyDone.
//   - port/tar.c (tarCreateHeader): ustar headers, directories and symbolic
//     links named with a trailing slash, mode without the type bits, user
//     and group "postgres".
//   - replication/repl_gram.y and repl_scanner.l: the unparenthesized
//     option list; tcop/dest.c and walsender.c: the CommandComplete
//     "BASE_BACKUP" (EndReplicationCommand) before ReadyForQuery.
//   - bin/pg_basebackup/pg_basebackup.c (ReceiveTarFile, BaseBackup): the
//     client appends the two zero blocks itself and reads the results in
//     exactly the order above.
//   - access/transam/xlog.c (do_pg_stop_backup): without NOWAIT and without
//     WAL archiving, the NOTICE that archiving is not enabled.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// The fake cluster: one database (OID 1) and one tablespace.
const (
	pg14SpcOID      = "16385"
	pg14SpcLocation = "/srv/pg14/spc1"
	// pg14VersionDir is TABLESPACE_VERSION_DIRECTORY of PostgreSQL 14:
	// "PG_" major "_" CATALOG_VERSION_NO.
	pg14VersionDir = "PG_14_202107181"
	pg14Start      = LSN(0x2000028)
	pg14End        = LSN(0x2000138)
	pg14Timeline   = 1
	// pg14Archiving is do_pg_stop_backup's notice for a backup that waits
	// for WAL archiving (no NOWAIT) on a server that does not archive.
	pg14Archiving = "WAL archiving is not enabled; you must ensure that all required WAL segments are copied through other means to complete the backup"
)

// pg14MTime is the modification time of every file of the fake cluster.
var pg14MTime = time.Unix(1700000000, 0)

// pg14Bytes returns n bytes of deterministic, non-repeating-looking data,
// so that a chunk copied to the wrong place shows.
func pg14Bytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7+i>>9) ^ seed
	}
	return b
}

// Contents of the fake cluster's files. The relation files are larger
// than one 32 kB CopyData message.
var (
	pg14Control = pg14Bytes(8192, 0x5a) // PG_CONTROL_FILE_SIZE
	pg14Rel1234 = pg14Bytes(40000, 0x11)
	pg14Rel5678 = pg14Bytes(36000, 0x22)
	pg14Conf    = []byte("# PostgreSQL 14 configuration\nlisten_addresses = '*'\n")
)

// pg14Member is one entry of an archive. Names are as the server writes
// them: directories and symbolic links end in "/".
type pg14Member struct {
	name string
	typ  byte
	link string
	data []byte
}

func pg14Dir(name string) pg14Member { return pg14Member{name: name, typ: tar.TypeDir} }
func pg14File(name string, data []byte) pg14Member {
	return pg14Member{name: name, typ: tar.TypeReg, data: data}
}

// pg14BaseMembers is base.tar in the order perform_base_backup sends it:
// backup_label first, tablespace_map when TABLESPACE_MAP was asked for
// (and then no links in pg_tblspc), sendDir's walk of the data directory
// (pg_wal as an empty directory plus "./pg_wal/archive_status", named
// with the "./" that sendDir really uses), and global/pg_control last.
func pg14BaseMembers(label string, tablespaceMap bool) []pg14Member {
	m := []pg14Member{pg14File("backup_label", []byte(fmt.Sprintf(
		"START WAL LOCATION: %s (file 000000010000000000000002)\n"+
			"CHECKPOINT LOCATION: 0/2000060\n"+
			"BACKUP METHOD: streamed\n"+
			"BACKUP FROM: primary\n"+
			"START TIME: 2023-11-14 22:13:20 UTC\n"+
			"LABEL: %s\n"+
			"START TIMELINE: %d\n", pg14Start, label, pg14Timeline)))}
	if tablespaceMap {
		m = append(m, pg14File("tablespace_map", []byte(pg14SpcOID+" "+pg14SpcLocation+"\n")))
	}
	m = append(m,
		pg14File("PG_VERSION", []byte("14\n")),
		pg14Dir("base/"),
		pg14Dir("base/1/"),
		pg14File("base/1/1234", pg14Rel1234),
		pg14Dir("global/"),
		pg14Dir("pg_tblspc/"),
	)
	if !tablespaceMap {
		m = append(m, pg14Member{name: "pg_tblspc/" + pg14SpcOID + "/", typ: tar.TypeSymlink, link: pg14SpcLocation})
	}
	return append(m,
		pg14Dir("pg_wal/"),
		pg14Dir("./pg_wal/archive_status/"),
		pg14File("postgresql.conf", pg14Conf),
		pg14File("global/pg_control", pg14Control),
	)
}

// pg14SpcMembers is the tablespace's archive: sendTablespace sends only
// the version directory of the tablespace.
func pg14SpcMembers() []pg14Member {
	return []pg14Member{
		pg14Dir(pg14VersionDir + "/"),
		pg14Dir(pg14VersionDir + "/1/"),
		pg14File(pg14VersionDir+"/1/5678", pg14Rel5678),
	}
}

// msgRecorder keeps each Write as one message: tar.Writer writes a header
// in one call, passes each data Write through, and writes the padding in
// one call, which is how sendFile cuts its CopyData messages.
type msgRecorder struct{ msgs [][]byte }

func (r *msgRecorder) Write(p []byte) (int, error) {
	if len(p) > 0 {
		r.msgs = append(r.msgs, bytes.Clone(p))
	}
	return len(p), nil
}

// pg14Messages renders members as the server's CopyData payloads. There
// are no end-of-archive blocks: PostgreSQL 14 leaves them to the client.
func pg14Messages(members []pg14Member) ([][]byte, error) {
	rec := &msgRecorder{}
	tw := tar.NewWriter(rec)
	for _, m := range members {
		mode := int64(0o600)
		switch m.typ {
		case tar.TypeDir:
			mode = 0o700
		case tar.TypeSymlink:
			mode = 0o777
		}
		hdr := &tar.Header{
			Typeflag: m.typ, Name: m.name, Linkname: m.link, Size: int64(len(m.data)),
			Mode: mode, Uid: 26, Gid: 26, Uname: "postgres", Gname: "postgres",
			ModTime: pg14MTime, Format: tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		for d := m.data; len(d) > 0; {
			n := min(len(d), 32768) // TAR_SEND_SIZE
			if _, err := tw.Write(d[:n]); err != nil {
				return nil, err
			}
			d = d[n:]
		}
		if err := tw.Flush(); err != nil {
			return nil, err
		}
	}
	return rec.msgs, nil
}

// pg14Estimate is the size the tablespace list reports for an archive, in
// kB: what sendDir counts with sizeonly (512 per header plus the padded
// contents). For the base directory that count leaves out the files
// perform_base_backup adds itself: backup_label, tablespace_map and
// pg_control.
func pg14Estimate(members []pg14Member) int64 {
	var n int64
	for _, m := range members {
		switch m.name {
		case "backup_label", "tablespace_map", "global/pg_control":
			continue
		}
		n += 512 + (int64(len(m.data))+511)&^511
	}
	return n / 1024
}

// pg14Manifest builds a version 1 backup manifest as backup_manifest.c
// does: files in the order sent, tablespace files under pg_tblspc/OID,
// CRC32C in the server's byte order, the WAL range, and the SHA-256 of
// everything before the checksum line. The client stores it unread, so
// it only has to be plausible.
func pg14Manifest(spc, base []pg14Member) []byte {
	var b bytes.Buffer
	b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [")
	first := true
	add := func(prefix string, members []pg14Member) {
		for _, m := range members {
			if m.typ != tar.TypeReg {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			var sum [4]byte
			binary.LittleEndian.PutUint32(sum[:], crc32.Checksum(m.data, crc32.MakeTable(crc32.Castagnoli)))
			fmt.Fprintf(&b, "\n{ \"Path\": \"%s%s\", \"Size\": %d, \"Last-Modified\": \"%s\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"%s\" }",
				prefix, m.name, len(m.data), pg14MTime.UTC().Format("2006-01-02 15:04:05 GMT"), hex.EncodeToString(sum[:]))
		}
	}
	add("pg_tblspc/"+pg14SpcOID+"/", spc)
	add("", base)
	fmt.Fprintf(&b, "\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": %d, \"Start-LSN\": \"%s\", \"End-LSN\": \"%s\" }\n],\n",
		pg14Timeline, pg14Start, pg14End)
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	return b.Bytes()
}

// pg14Opt is one base_backup_opt, named as parse_basebackup_options sees
// it (lower case); arg is the SCONST or UCONST, if any.
type pg14Opt struct{ name, arg string }

// pg14OptArgs are the base_backup_opt keywords of PostgreSQL 14's
// repl_gram.y and the token each takes: 's' SCONST, 'u' UCONST, 0 none.
var pg14OptArgs = map[string]byte{
	"LABEL": 's', "PROGRESS": 0, "FAST": 0, "WAL": 0, "NOWAIT": 0, "MAX_RATE": 'u',
	"TABLESPACE_MAP": 0, "NOVERIFY_CHECKSUMS": 0, "MANIFEST": 's', "MANIFEST_CHECKSUMS": 's',
}

type pg14Token struct {
	kind byte // 'w' word, 'i' quoted identifier, 's' SCONST, 'u' UCONST, else the character
	text string
}

// pg14Lex splits a replication command as repl_scanner.l does: a quote
// inside a string literal is written twice (there are no backslash
// escapes), and the punctuation the scanner has tokens for is returned as
// such, so that the grammar can refuse it where BASE_BACKUP has none.
func pg14Lex(s string) ([]pg14Token, error) {
	var toks []pg14Token
	isWord := func(c byte, first bool) bool {
		return c == '_' || c >= 0x80 || (c|0x20 >= 'a' && c|0x20 <= 'z') || (!first && (c == '$' || (c >= '0' && c <= '9')))
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case strings.IndexByte(" \t\n\r\f", c) >= 0:
			i++
		case c == '\'' || c == '"':
			var b strings.Builder
			for i++; ; i++ {
				if i >= len(s) {
					return nil, errors.New("unterminated quoted string")
				}
				if s[i] == c {
					if i+1 < len(s) && s[i+1] == c {
						b.WriteByte(c)
						i++
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
			}
			kind := byte('s')
			if c == '"' {
				kind = 'i'
			}
			toks = append(toks, pg14Token{kind, b.String()})
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			toks = append(toks, pg14Token{'u', s[i:j]})
			i = j
		case isWord(c, true):
			j := i
			for j < len(s) && isWord(s[j], false) {
				j++
			}
			toks = append(toks, pg14Token{'w', s[i:j]})
			i = j
		case strings.IndexByte(",;().", c) >= 0:
			toks = append(toks, pg14Token{c, string(c)})
			i++
		default:
			return nil, fmt.Errorf("syntax error: unexpected character %q", c)
		}
	}
	return toks, nil
}

// parsePG14BaseBackup parses cmd with PostgreSQL 14's grammar for
// BASE_BACKUP (K_BASE_BACKUP base_backup_opt_list, then an optional
// semicolon) and applies parse_basebackup_options' checks. PostgreSQL
// 15's parenthesized form is a syntax error here, as it is on a 14 server.
func parsePG14BaseBackup(cmd string) ([]pg14Opt, error) {
	toks, err := pg14Lex(cmd)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 || toks[0] != (pg14Token{'w', "BASE_BACKUP"}) {
		return nil, errors.New("syntax error: not a BASE_BACKUP command")
	}
	var opts []pg14Opt
	for i := 1; i < len(toks); i++ {
		t := toks[i]
		if t.kind == ';' && i == len(toks)-1 {
			break
		}
		want, ok := pg14OptArgs[t.text]
		if t.kind != 'w' || !ok {
			return nil, fmt.Errorf("syntax error at or near %q", t.text)
		}
		o := pg14Opt{name: strings.ToLower(t.text)}
		if want != 0 {
			if i++; i >= len(toks) || toks[i].kind != want {
				return nil, fmt.Errorf("syntax error: %s needs an argument", t.text)
			}
			o.arg = toks[i].text
		}
		opts = append(opts, o)
	}
	return opts, checkPG14Options(opts)
}

// checkPG14Options does what parse_basebackup_options of PostgreSQL 14
// checks beyond the grammar.
func checkPG14Options(opts []pg14Opt) error {
	seen := map[string]string{}
	for _, o := range opts {
		if _, dup := seen[o.name]; dup {
			return fmt.Errorf("duplicate option %q", o.name)
		}
		seen[o.name] = o.arg
		switch o.name {
		case "max_rate":
			if n, err := strconv.ParseUint(o.arg, 10, 32); err != nil || n < 32 || n > 1048576 {
				return fmt.Errorf("%s is outside the valid range for parameter \"MAX_RATE\" (32 .. 1048576)", o.arg)
			}
		case "manifest":
			switch strings.ToLower(o.arg) {
			case "yes", "no", "true", "false", "on", "off", "1", "0", "force-encode":
			default:
				return fmt.Errorf("unrecognized manifest option: %q", o.arg)
			}
		case "manifest_checksums":
			switch strings.ToUpper(o.arg) {
			case "NONE", "CRC32C", "SHA224", "SHA256", "SHA384", "SHA512":
			default:
				return fmt.Errorf("unrecognized checksum algorithm: %q", o.arg)
			}
		}
	}
	if _, ok := seen["manifest_checksums"]; ok && !pg14Manifesting(seen) {
		return errors.New("manifest checksums require a backup manifest")
	}
	return nil
}

func pg14Manifesting(seen map[string]string) bool {
	v, ok := seen["manifest"]
	switch strings.ToLower(v) {
	case "no", "false", "off", "0":
		return false
	}
	return ok
}

// pg14Server is the scripted walsender. It serves any number of
// connections, each with the startup exchange and BASE_BACKUP.
type pg14Server struct {
	ln net.Listener
	// failAfter, if positive, ends the first CopyOut with an ERROR after
	// that many CopyData messages, as sendFile does when a read fails.
	failAfter int

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	errs  []error
	cmds  [][]pg14Opt
	sent  int64  // CopyData payload bytes sent
	mfst  []byte // the manifest sent
	spc   [][]byte
	base  [][]byte
}

func newPG14Server(t *testing.T, failAfter int) *pg14Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &pg14Server{ln: ln, failAfter: failAfter}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		for _, err := range s.errs {
			t.Errorf("fake PostgreSQL 14: %v", err)
		}
	})
	return s
}

func (s *pg14Server) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *pg14Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			if err := s.serve(pgproto3.NewBackend(c, c)); err != nil {
				s.fail(err)
			}
		}()
	}
}

// connect is Options.Connect for the fake server.
func (s *pg14Server) connect(ctx context.Context, replication bool) (*pgconn.PgConn, error) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=5",
		s.ln.Addr().(*net.TCPAddr).Port)
	if replication {
		dsn += " replication=database"
	}
	return pgconn.Connect(ctx, dsn)
}

// serve runs one connection: a trust-authenticated walsender startup,
// then queries until Terminate or EOF.
func (s *pg14Server) serve(be *pgproto3.Backend) error {
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		return err
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		return fmt.Errorf("expected a StartupMessage, got %T", msg)
	}
	if sm.Parameters["replication"] != "database" {
		return fmt.Errorf("startup without replication=database: %v", sm.Parameters)
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{
		{"application_name", ""}, {"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"},
		{"default_transaction_read_only", "off"}, {"in_hot_standby", "off"},
		{"integer_datetimes", "on"}, {"IntervalStyle", "postgres"}, {"is_superuser", "on"},
		{"server_encoding", "UTF8"}, {"server_version", "14.10"},
		{"session_authorization", "postgres"}, {"standard_conforming_strings", "on"},
		{"TimeZone", "UTC"},
	} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: 4242, SecretKey: []byte{1, 2, 3, 4}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return err
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.Terminate:
			return nil
		case *pgproto3.Query:
			if err := s.baseBackup(be, m.String); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected %T from the client", msg)
		}
	}
}

// pg14Position is SendXlogRecPtrResult: recptr as text, tli as int8.
func pg14Position(lsn LSN) []pgproto3.BackendMessage {
	return []pgproto3.BackendMessage{
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
			{Name: []byte("recptr"), DataTypeOID: 25, DataTypeSize: -1},
			{Name: []byte("tli"), DataTypeOID: 20, DataTypeSize: -1},
		}},
		&pgproto3.DataRow{Values: [][]byte{[]byte(lsn.String()), []byte(strconv.Itoa(pg14Timeline))}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT")},
	}
}

// pg14TablespaceList is SendBackupHeader: spcoid (oid), spclocation
// (text), size (int8, kB, NULL without PROGRESS); NULL is a nil value.
func pg14TablespaceList(rows ...[][]byte) []pgproto3.BackendMessage {
	msgs := []pgproto3.BackendMessage{&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("spcoid"), DataTypeOID: 26, DataTypeSize: 4},
		{Name: []byte("spclocation"), DataTypeOID: 25, DataTypeSize: -1},
		{Name: []byte("size"), DataTypeOID: 20, DataTypeSize: 8},
	}}}
	for _, r := range rows {
		msgs = append(msgs, &pgproto3.DataRow{Values: r})
	}
	return append(msgs, &pgproto3.CommandComplete{CommandTag: []byte("SELECT")})
}

func pg14Error(code, msg, file, routine string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code,
		Message: msg, File: file, Routine: routine}
}

// baseBackup answers one query like a PostgreSQL 14 walsender would.
func (s *pg14Server) baseBackup(be *pgproto3.Backend, cmd string) error {
	send := func(msgs ...pgproto3.BackendMessage) {
		for _, m := range msgs {
			if d, ok := m.(*pgproto3.CopyData); ok {
				s.mu.Lock()
				s.sent += int64(len(d.Data))
				s.mu.Unlock()
			}
			be.Send(m)
		}
	}
	opts, err := parsePG14BaseBackup(cmd)
	s.mu.Lock()
	s.cmds = append(s.cmds, opts)
	s.mu.Unlock()
	if err != nil {
		// The error a 14 server reports, and a test failure.
		s.fail(fmt.Errorf("%s: %v", cmd, err))
		send(pg14Error("42601", err.Error(), "repl_scanner.l", "replication_yyerror"), &pgproto3.ReadyForQuery{TxStatus: 'I'})
		return be.Flush()
	}
	has := map[string]string{}
	for _, o := range opts {
		has[o.name] = o.arg
	}
	if _, ok := has["wal"]; ok {
		return errors.New("the fake server cannot send WAL (BASE_BACKUP ... WAL)")
	}
	label, ok := has["label"]
	if !ok {
		label = "base backup"
	}
	_, tablespaceMap := has["tablespace_map"]
	_, progress := has["progress"]
	_, nowait := has["nowait"]

	spcMembers, baseMembers := pg14SpcMembers(), pg14BaseMembers(label, tablespaceMap)
	spcMsgs, err := pg14Messages(spcMembers)
	if err != nil {
		return err
	}
	baseMsgs, err := pg14Messages(baseMembers)
	if err != nil {
		return err
	}
	var manifest []byte
	if pg14Manifesting(has) {
		manifest = pg14Manifest(spcMembers, baseMembers)
	}
	s.mu.Lock()
	s.spc, s.base, s.mfst = spcMsgs, baseMsgs, manifest
	s.mu.Unlock()

	size := func(m []pg14Member) []byte {
		if !progress {
			return nil
		}
		return []byte(strconv.FormatInt(pg14Estimate(m), 10))
	}
	send(pg14Position(pg14Start)...)
	send(pg14TablespaceList(
		[][]byte{[]byte(pg14SpcOID), []byte(pg14SpcLocation), size(spcMembers)},
		[][]byte{nil, nil, size(baseMembers)},
	)...)
	for i, archive := range [][][]byte{spcMsgs, baseMsgs} {
		send(&pgproto3.CopyOutResponse{})
		for j, d := range archive {
			if i == 0 && s.failAfter > 0 && j == s.failAfter {
				send(pg14Error("58030",
					`could not read file "`+pg14SpcLocation+"/"+pg14VersionDir+`/1/5678": Input/output error`,
					"basebackup.c", "sendFile"),
					&pgproto3.ReadyForQuery{TxStatus: 'I'})
				return be.Flush()
			}
			send(&pgproto3.CopyData{Data: d})
		}
		send(&pgproto3.CopyDone{})
	}
	if !nowait {
		send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000",
			Message: pg14Archiving, File: "xlog.c", Routine: "do_pg_stop_backup"})
	}
	if manifest != nil {
		send(&pgproto3.CopyOutResponse{})
		for m := manifest; len(m) > 0; {
			n := min(len(m), 8192) // BLCKSZ
			send(&pgproto3.CopyData{Data: m[:n]})
			m = m[n:]
		}
		send(&pgproto3.CopyDone{})
	}
	send(pg14Position(pg14End)...)
	send(&pgproto3.CommandComplete{CommandTag: []byte("BASE_BACKUP")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	return be.Flush()
}

// commands returns the parsed option lists of the BASE_BACKUPs received.
func (s *pg14Server) commands() [][]pg14Opt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmds
}

// pg14Sent is what the server sent in its last BASE_BACKUP.
type pg14Sent struct {
	spc, base [][]byte // CopyData payloads per archive
	manifest  []byte
	bytes     int64 // all CopyData payload bytes, manifest included
}

func (s *pg14Server) sentData() pg14Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return pg14Sent{spc: s.spc, base: s.base, manifest: s.mfst, bytes: s.sent}
}

// pg14Opts is what baseBackupCommand must send to a 14 server for the
// tests' options, in this order (extra: TABLESPACE_MAP for tar).
func pg14Opts(tablespaceMap bool) []pg14Opt {
	o := []pg14Opt{{"label", "pgverbs"}, {"progress", ""}, {"fast", ""}}
	if tablespaceMap {
		o = append(o, pg14Opt{"tablespace_map", ""})
	}
	return append(o, pg14Opt{"noverify_checksums", ""}, pg14Opt{"manifest", "yes"}, pg14Opt{"manifest_checksums", "CRC32C"})
}

func legacyOptions(s *pg14Server, root string, format Format) Options {
	o := Options{
		Root:       root,
		Target:     "backup1",
		Format:     format,
		WAL:        WALNone,
		Checkpoint: FastCheckpoint,
		Manifest:   true,
		Connect:    s.connect,
	}
	if format == Tar {
		o.Compression = Gzip
	}
	return o
}

func runLegacy(t *testing.T, o Options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func wantFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes differ from the %d sent", path, len(got), len(want))
	}
}

// checkLegacyResult checks what every successful run reports.
func checkLegacyResult(t *testing.T, s *pg14Server, res *Result, files int) {
	t.Helper()
	if res.StartLSN != pg14Start || res.EndLSN != pg14End || res.Timeline != pg14Timeline {
		t.Errorf("positions %s..%s on %d, want %s..%s on %d", res.StartLSN, res.EndLSN, res.Timeline, pg14Start, pg14End, pg14Timeline)
	}
	if sent := s.sentData().bytes; res.Bytes != sent {
		t.Errorf("Bytes = %d, want the %d bytes of CopyData sent", res.Bytes, sent)
	}
	if res.Files != files {
		t.Errorf("Files = %d, want %d", res.Files, files)
	}
	if !res.Manifest {
		t.Error("Manifest = false")
	}
	found := false
	for _, w := range res.Warnings {
		found = found || strings.Contains(w, pg14Archiving)
	}
	if !found {
		t.Errorf("Warnings %q lack the server's NOTICE", res.Warnings)
	}
}

func TestLegacyPG14Plain(t *testing.T) {
	s := newPG14Server(t, 0)
	root := t.TempDir()
	o := legacyOptions(s, root, Plain)
	var last Progress
	o.Progress = func(p Progress) { last = p }
	res := runLegacy(t, o)

	// The total comes from the size column of the tablespace list (kB).
	wantTotal := 1024 * (pg14Estimate(pg14SpcMembers()) + pg14Estimate(pg14BaseMembers("pgverbs", false)))
	if last.Phase != "done" || last.Total != wantTotal || last.Bytes != s.sentData().bytes {
		t.Errorf("last progress %+v, want done with total %d and %d bytes", last, wantTotal, s.sentData().bytes)
	}

	if got := s.commands(); !reflect.DeepEqual(got, [][]pg14Opt{pg14Opts(false)}) {
		t.Errorf("BASE_BACKUP options %v, want %v", got, pg14Opts(false))
	}
	dir := filepath.Join(root, "backup1")
	base := pg14BaseMembers("pgverbs", false)
	wantFile(t, filepath.Join(dir, "backup_label"), base[0].data)
	wantFile(t, filepath.Join(dir, "PG_VERSION"), []byte("14\n"))
	wantFile(t, filepath.Join(dir, "global", "pg_control"), pg14Control)
	wantFile(t, filepath.Join(dir, "base", "1", "1234"), pg14Rel1234)
	wantFile(t, filepath.Join(dir, "postgresql.conf"), pg14Conf)
	if fi, err := os.Stat(filepath.Join(dir, "pg_wal", "archive_status")); err != nil || !fi.IsDir() {
		t.Errorf("pg_wal/archive_status: %v", err)
	}
	link := filepath.Join(dir, "pg_tblspc", pg14SpcOID)
	if got, err := os.Readlink(link); err != nil || got != "../tablespaces/"+pg14SpcOID {
		t.Errorf("pg_tblspc/%s links to %q (%v), want ../tablespaces/%s", pg14SpcOID, got, err, pg14SpcOID)
	}
	// Through the link, as a restored server would read it.
	wantFile(t, filepath.Join(link, pg14VersionDir, "1", "5678"), pg14Rel5678)
	wantFile(t, filepath.Join(dir, "tablespaces", pg14SpcOID, pg14VersionDir, "1", "5678"), pg14Rel5678)
	wantFile(t, filepath.Join(dir, "backup_manifest"), s.sentData().manifest)
	if _, err := os.Lstat(filepath.Join(dir, markerName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marker left behind: %v", err)
	}
	// backup_label, PG_VERSION, base/1/1234, postgresql.conf, pg_control
	// and the tablespace's 5678.
	checkLegacyResult(t, s, res, 6)
	if res.Path != dir || res.Format != Plain || res.Method != Replication {
		t.Errorf("Result %+v", res)
	}
}

// readGzipTar decompresses a .tar.gz and returns the tar stream and its
// entries (name to contents, "-> target" for links, "dir" for directories).
func readGzipTar(t *testing.T, path string) ([]byte, map[string]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	entries := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			entries[hdr.Name] = "dir"
		case tar.TypeSymlink:
			entries[hdr.Name] = "-> " + hdr.Linkname
		default:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			entries[hdr.Name] = string(data)
		}
	}
	return raw, entries
}

func TestLegacyPG14TarGzip(t *testing.T) {
	s := newPG14Server(t, 0)
	root := t.TempDir()
	res := runLegacy(t, legacyOptions(s, root, Tar))

	if got := s.commands(); !reflect.DeepEqual(got, [][]pg14Opt{pg14Opts(true)}) {
		t.Errorf("BASE_BACKUP options %v, want %v", got, pg14Opts(true))
	}
	dir := filepath.Join(root, "backup1")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if want := []string{pg14SpcOID + ".tar.gz", "backup_manifest", "base.tar.gz"}; !reflect.DeepEqual(names, want) {
		t.Errorf("backup holds %q, want %q", names, want)
	}

	// Each archive is the server's stream plus the two zero blocks that
	// the client adds, as pg_basebackup's ReceiveTarFile does.
	endBlocks := make([]byte, 1024)
	baseRaw, base := readGzipTar(t, filepath.Join(dir, "base.tar.gz"))
	if want := append(bytes.Join(s.sentData().base, nil), endBlocks...); !bytes.Equal(baseRaw, want) {
		t.Errorf("base.tar: %d bytes, want the %d sent plus the end blocks", len(baseRaw), len(want)-len(endBlocks))
	}
	for name, want := range map[string]string{
		"tablespace_map":           pg14SpcOID + " " + pg14SpcLocation + "\n",
		"PG_VERSION":               "14\n",
		"base/1/1234":              string(pg14Rel1234),
		"global/pg_control":        string(pg14Control),
		"pg_tblspc/":               "dir",
		"./pg_wal/archive_status/": "dir",
	} {
		if base[name] != want {
			t.Errorf("base.tar: %s has %d bytes, want %d", name, len(base[name]), len(want))
		}
	}
	if _, ok := base["pg_tblspc/"+pg14SpcOID+"/"]; ok {
		t.Error("base.tar has a tablespace link although TABLESPACE_MAP was sent")
	}
	spcRaw, spc := readGzipTar(t, filepath.Join(dir, pg14SpcOID+".tar.gz"))
	if want := append(bytes.Join(s.sentData().spc, nil), endBlocks...); !bytes.Equal(spcRaw, want) {
		t.Errorf("%s.tar: %d bytes, want the %d sent plus the end blocks", pg14SpcOID, len(spcRaw), len(want)-len(endBlocks))
	}
	if spc[pg14VersionDir+"/1/5678"] != string(pg14Rel5678) {
		t.Errorf("%s.tar lacks %s/1/5678", pg14SpcOID, pg14VersionDir)
	}
	wantFile(t, filepath.Join(dir, "backup_manifest"), s.sentData().manifest)
	// The regular files of both archives, tablespace_map included.
	checkLegacyResult(t, s, res, 7)
}

func TestLegacyPG14ErrorMidCopy(t *testing.T) {
	// Four messages into the tablespace's archive, the first CopyOut: two
	// directory headers, the file's header and its first 32 kB.
	msgs, err := pg14Messages(pg14SpcMembers())
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, m := range msgs {
		sizes = append(sizes, len(m))
	}
	if want := []int{512, 512, 512, 32768, 36000 - 32768, 352}; !reflect.DeepEqual(sizes, want) {
		t.Fatalf("tablespace archive sent as messages of %v bytes, want %v", sizes, want)
	}
	s := newPG14Server(t, 4)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Run(ctx, legacyOptions(s, root, Plain))
	if err == nil {
		t.Fatalf("Run succeeded: %+v", res)
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is no *pgerr.Error", err, err)
	}
	if pe.Code != "58030" || !strings.Contains(pe.Message, "could not read file") {
		t.Errorf("error %s %q, want the server's 58030", pe.Code, pe.Message)
	}
	if _, err := os.Lstat(filepath.Join(root, "backup1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("target after the failure: %v", err)
	}
	if left, _ := os.ReadDir(root); len(left) != 0 {
		t.Errorf("root holds %v after the failure", left)
	}
	if got := s.commands(); !reflect.DeepEqual(got, [][]pg14Opt{pg14Opts(false)}) {
		t.Errorf("BASE_BACKUP options %v, want %v", got, pg14Opts(false))
	}
}

func TestLegacyPG14TablespaceMap(t *testing.T) {
	s := newPG14Server(t, 0)
	root := t.TempDir()
	o := legacyOptions(s, root, Plain)
	o.TablespaceMap = map[string]string{pg14SpcLocation: "spc-moved"}
	res := runLegacy(t, o)

	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(realRoot, "spc-moved")
	dir := filepath.Join(root, "backup1")
	link := filepath.Join(dir, "pg_tblspc", pg14SpcOID)
	if got, err := os.Readlink(link); err != nil || got != moved {
		t.Errorf("pg_tblspc/%s links to %q (%v), want %q", pg14SpcOID, got, err, moved)
	}
	wantFile(t, filepath.Join(moved, pg14VersionDir, "1", "5678"), pg14Rel5678)
	wantFile(t, filepath.Join(link, pg14VersionDir, "1", "5678"), pg14Rel5678)
	if _, err := os.Lstat(filepath.Join(dir, "tablespaces")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tablespaces/ in the target although the tablespace was mapped: %v", err)
	}
	wantFile(t, filepath.Join(dir, "base", "1", "1234"), pg14Rel1234)
	wantFile(t, filepath.Join(dir, "backup_manifest"), s.sentData().manifest)
	checkLegacyResult(t, s, res, 6)
}

// TestLegacyPG14Command checks baseBackupCommand's syntax for 13 and 14
// against the PostgreSQL 14 grammar for option combinations the other
// tests do not send.
func TestLegacyPG14Command(t *testing.T) {
	connect := func(context.Context, bool) (*pgconn.PgConn, error) { return nil, errors.New("unused") }
	for _, c := range []struct {
		o    Options
		want []pg14Opt
	}{
		{Options{}, []pg14Opt{{"label", "pgverbs"}, {"progress", ""}, {"nowait", ""}, {"noverify_checksums", ""}}},
		{
			Options{Label: "it's", WAL: WALFetch, MaxRate: 1 << 20, Format: Tar, VerifyChecksums: true, Manifest: true, ManifestChecksums: "sha256"},
			[]pg14Opt{{"label", "it's"}, {"progress", ""}, {"wal", ""}, {"nowait", ""}, {"max_rate", "1024"},
				{"tablespace_map", ""}, {"manifest", "yes"}, {"manifest_checksums", "SHA256"}},
		},
		{
			Options{WAL: WALNone, Checkpoint: SpreadCheckpoint, MaxRate: 32 * 1024, ManifestChecksums: "NONE"},
			[]pg14Opt{{"label", "pgverbs"}, {"progress", ""}, {"max_rate", "32"}, {"noverify_checksums", ""}},
		},
	} {
		c.o.Connect = connect
		st, err := validate(c.o)
		if err != nil {
			t.Fatal(err)
		}
		b := &run{s: st}
		for _, major := range []int{13, 14} {
			cmd := b.baseBackupCommand(major)
			got, err := parsePG14BaseBackup(cmd)
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Errorf("%d: %s parses as %v (%v), want %v", major, cmd, got, err, c.want)
			}
		}
		// The fake's grammar must tell the two syntaxes apart, or the
		// checks above prove nothing.
		if cmd := b.baseBackupCommand(15); !strings.HasPrefix(cmd, "BASE_BACKUP (") {
			t.Errorf("15: %s", cmd)
		} else if _, err := parsePG14BaseBackup(cmd); err == nil {
			t.Errorf("PostgreSQL 14's grammar accepts %s", cmd)
		}
	}
}

// TestLegacyPG14NoManifest: without MANIFEST a 14 server sends no
// manifest CopyOut at all, so the client must not wait for one.
func TestLegacyPG14NoManifest(t *testing.T) {
	s := newPG14Server(t, 0)
	root := t.TempDir()
	o := legacyOptions(s, root, Plain)
	o.Manifest = false
	res := runLegacy(t, o)

	want := []pg14Opt{{"label", "pgverbs"}, {"progress", ""}, {"fast", ""}, {"noverify_checksums", ""}}
	if got := s.commands(); !reflect.DeepEqual(got, [][]pg14Opt{want}) {
		t.Errorf("BASE_BACKUP options %v, want %v", got, want)
	}
	dir := filepath.Join(root, "backup1")
	if _, err := os.Lstat(filepath.Join(dir, "backup_manifest")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("backup_manifest without MANIFEST: %v", err)
	}
	wantFile(t, filepath.Join(dir, "tablespaces", pg14SpcOID, pg14VersionDir, "1", "5678"), pg14Rel5678)
	if res.Manifest || res.EndLSN != pg14End || res.Files != 6 || res.Bytes != s.sentData().bytes {
		t.Errorf("Result %+v", res)
	}
}
