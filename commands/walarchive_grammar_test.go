package commands_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
)

func TestParseWALArchive(t *testing.T) {
	s := func(v string) *string { return &v }
	b := func(v bool) *bool { return &v }
	zstd, none := walarchive.Zstd, walarchive.NoCompression
	tests := []struct {
		name, sql string
		want      *commands.WALArchiveStmt
	}{
		{"start", "START WAL ARCHIVE TO 'wal'", &commands.WALArchiveStmt{Verb: commands.WALStart, Dir: "wal"}},
		{"start lower case, semicolons", "start wal archive to 'a/b';;", &commands.WALArchiveStmt{Verb: commands.WALStart, Dir: "a/b"}},
		{"start quotes and comments", "Start /* c */ Wal -- x\n Archive TO 'it''s'", &commands.WALArchiveStmt{Verb: commands.WALStart, Dir: "it's"}},
		{"start all options", `START WAL ARCHIVE TO 'w' WITH (SLOT 'arch_1', create_slot off, Application_Name 'My App',
			SYNCHRONOUS 'Off', COMPRESSION zstd LEVEL 19, RETENTION '7 days', MAX_SIZE '100GB')`,
			&commands.WALArchiveStmt{Verb: commands.WALStart, Dir: "w", Options: commands.WALArchiveOptions{
				Slot: s("arch_1"), CreateSlot: b(false), ApplicationName: s("My App"), Synchronous: b(false),
				Compression: &zstd, Level: 19, Retention: s("7 days"), MaxSize: s("100GB")}}},
		{"booleans", "START WAL ARCHIVE TO 'w' WITH (synchronous on, create_slot TRUE)",
			&commands.WALArchiveStmt{Verb: commands.WALStart, Dir: "w", Options: commands.WALArchiveOptions{Synchronous: b(true), CreateSlot: b(true)}}},
		{"compression none", "START WAL ARCHIVE TO 'w' WITH (COMPRESSION NONE)",
			&commands.WALArchiveStmt{Verb: commands.WALStart, Dir: "w", Options: commands.WALArchiveOptions{Compression: &none}}},
		{"stop", "STOP WAL ARCHIVE", &commands.WALArchiveStmt{Verb: commands.WALStop}},
		{"stop drop slot", "stop wal archive drop slot;", &commands.WALArchiveStmt{Verb: commands.WALStop, DropSlot: true}},
		{"alter set", "ALTER WAL ARCHIVE SET (RETENTION '1 day', compression zstd)",
			&commands.WALArchiveStmt{Verb: commands.WALAlter, Options: commands.WALArchiveOptions{Retention: s("1 day"), Compression: &zstd}}},
		{"set source", "ALTER WAL ARCHIVE SET SOURCE 'host=db2 port=5433'",
			&commands.WALArchiveStmt{Verb: commands.WALSetSource, Source: "host=db2 port=5433"}},
		{"set source force", "alter wal archive set source 'host=x' with (force on);",
			&commands.WALArchiveStmt{Verb: commands.WALSetSource, Source: "host=x", Force: true}},
		{"set source force bare", "ALTER WAL ARCHIVE SET SOURCE 'host=x' WITH (FORCE)",
			&commands.WALArchiveStmt{Verb: commands.WALSetSource, Source: "host=x", Force: true}},
		{"set source force off", "ALTER WAL ARCHIVE SET SOURCE 'host=x' WITH (FORCE off)",
			&commands.WALArchiveStmt{Verb: commands.WALSetSource, Source: "host=x"}},
		{"pause", "alter wal archive pause", &commands.WALArchiveStmt{Verb: commands.WALPause}},
		{"resume", "ALTER WAL ARCHIVE RESUME;", &commands.WALArchiveStmt{Verb: commands.WALResume}},
		{"show", "SHOW WAL ARCHIVE", &commands.WALArchiveStmt{Verb: commands.WALShow}},
		{"show segments", "show wal archive Segments;", &commands.WALArchiveStmt{Verb: commands.WALShowSegments}},
		{"check", "CHECK WAL ARCHIVE", &commands.WALArchiveStmt{Verb: commands.WALCheck}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := commands.ParseWALArchive(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st, tc.want) {
				t.Fatalf("got %+v, want %+v", st, tc.want)
			}
		})
	}
}

func TestParseWALArchiveErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name, sql string
		code      pgerr.Code
		pos       int32
		msg       string
	}{
		{"no directory", "START WAL ARCHIVE TO", pgerr.SyntaxError, 21, "syntax error at end of input"},
		{"directory not a string", "START WAL ARCHIVE TO wal", pgerr.SyntaxError, 22, `syntax error at or near "wal"`},
		{"escape string", `START WAL ARCHIVE TO E'w\\x'`, pgerr.SyntaxError, 22, "syntax error"},
		{"no TO", "START WAL ARCHIVE 'w'", pgerr.SyntaxError, 19, "syntax error"},
		{"unknown option", "START WAL ARCHIVE TO 'w' WITH (speed fast)", pgerr.InvalidParameterValue, 32, `unrecognized WAL ARCHIVE option "speed"`},
		{"quoted option name", `START WAL ARCHIVE TO 'w' WITH ("slot" 'x')`, pgerr.InvalidParameterValue, 32, "unrecognized"},
		{"duplicate", "START WAL ARCHIVE TO 'w' WITH (slot 'a', SLOT 'b')", pgerr.SyntaxError, 42, "conflicting or redundant options"},
		{"bad value", "START WAL ARCHIVE TO 'w' WITH (synchronous maybe)", pgerr.InvalidParameterValue, 44, `invalid value "maybe"`},
		{"bad compression", "ALTER WAL ARCHIVE SET (compression gzip)", pgerr.InvalidParameterValue, 36, `invalid value "gzip"`},
		{"level of none", "ALTER WAL ARCHIVE SET (compression none level 3)", pgerr.InvalidParameterValue, 41, "COMPRESSION none takes no LEVEL"},
		{"level out of range", "ALTER WAL ARCHIVE SET (compression zstd level 23)", pgerr.InvalidParameterValue, 47, "out of range"},
		{"level not a number", "ALTER WAL ARCHIVE SET (compression zstd level high)", pgerr.SyntaxError, 47, "syntax error"},
		{"slot upper case", "START WAL ARCHIVE TO 'w' WITH (SLOT 'Arch')", pgerr.InvalidName, 37, `replication slot name "Arch" contains invalid character`},
		{"slot dash", "ALTER WAL ARCHIVE SET (slot 'a-b')", pgerr.InvalidName, 29, "contains invalid character"},
		{"slot empty", "ALTER WAL ARCHIVE SET (slot '')", pgerr.InvalidName, 29, "is too short"},
		{"slot too long", "ALTER WAL ARCHIVE SET (slot '" + long + "')", pgerr.NameTooLong, 29, "is too long"},
		{"slot not a string", "ALTER WAL ARCHIVE SET (slot pgverbs)", pgerr.SyntaxError, 29, "syntax error"},
		{"application name escape string", "ALTER WAL ARCHIVE SET (application_name E'a\\tb')", pgerr.SyntaxError, 41, "syntax error"},
		{"application name not printable", "ALTER WAL ARCHIVE SET (application_name 'a\tb')", pgerr.InvalidParameterValue, 41, "not printable ASCII"},
		{"application name too long", "ALTER WAL ARCHIVE SET (application_name '" + long + "')", pgerr.InvalidParameterValue, 41, "1 to 63 bytes"},
		{"application name empty", "ALTER WAL ARCHIVE SET (application_name '')", pgerr.InvalidParameterValue, 41, "APPLICATION_NAME"},
		{"retention not a string", "ALTER WAL ARCHIVE SET (retention 7)", pgerr.SyntaxError, 34, "syntax error"},
		{"empty set", "ALTER WAL ARCHIVE SET ()", pgerr.SyntaxError, 24, `syntax error at or near ")"`},
		{"unclosed", "START WAL ARCHIVE TO 'w' WITH (slot 'a'", pgerr.SyntaxError, 40, "end of input"},
		{"alter alone", "ALTER WAL ARCHIVE", pgerr.SyntaxError, 18, "end of input"},
		{"alter other", "ALTER WAL ARCHIVE RESTART", pgerr.SyntaxError, 19, `"RESTART"`},
		{"stop drop", "STOP WAL ARCHIVE DROP", pgerr.SyntaxError, 22, "end of input"},
		{"trailing", "SHOW WAL ARCHIVE now", pgerr.SyntaxError, 18, `"now"`},
		{"check extra", "CHECK WAL ARCHIVE SEGMENTS", pgerr.SyntaxError, 19, `"SEGMENTS"`},
		{"quoted keyword", `SHOW "wal" ARCHIVE`, pgerr.SyntaxError, 6, "syntax error"},
		{"not ours", "VACUUM WAL ARCHIVE", pgerr.SyntaxError, 1, "syntax error"},
		{"unterminated", "START WAL ARCHIVE TO 'w", pgerr.SyntaxError, 22, "unterminated quoted string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := commands.ParseWALArchive(tc.sql)
			var pe *pgerr.Error
			if !errors.As(err, &pe) || pe.Code != tc.code || pe.Position != tc.pos || !strings.Contains(pe.Message, tc.msg) {
				t.Fatalf("got %v (%+v), want %s at %d: %q", err, pe, tc.code, tc.pos, tc.msg)
			}
		})
	}
}

// FuzzWALArchiveGrammar: the parser never panics, and its errors are
// PostgreSQL errors pointing inside the statement or just past its end.
func FuzzWALArchiveGrammar(f *testing.F) {
	for _, s := range []string{
		"START WAL ARCHIVE TO 'w' WITH (slot 'a', compression zstd level 3, retention '1 day')",
		"STOP WAL ARCHIVE DROP SLOT", "ALTER WAL ARCHIVE SET (synchronous off)", "ALTER WAL ARCHIVE PAUSE",
		"SHOW WAL ARCHIVE SEGMENTS", "CHECK WAL ARCHIVE;", "START WAL ARCHIVE TO E'x'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		st, err := commands.ParseWALArchive(sql)
		if err != nil {
			var pe *pgerr.Error
			if !errors.As(err, &pe) {
				t.Fatalf("%q: error %v is not a *pgerr.Error", sql, err)
			}
			if pe.Position < 1 || pe.Position > commands.PositionAt(sql, len(sql)) {
				t.Fatalf("%q: %v at position %d", sql, pe, pe.Position)
			}
			return
		}
		if st.Verb == commands.WALStart && !strings.Contains(sql, "'") {
			t.Fatalf("%q: START without a string literal accepted: %+v", sql, st)
		}
	})
}
