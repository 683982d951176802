package extension

import (
	"reflect"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestPrepareScript(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		schema string
		want   []Statement
		code   pgerr.Code
		parts  []string
	}{
		{
			name:   "statements and lines",
			script: "CREATE TABLE t (x int);\n\n-- a comment; with a semicolon\nINSERT INTO t VALUES (1);   /* trailing */\n\n  /* a /* nested */ comment */ SELECT 1",
			want: []Statement{
				{"CREATE TABLE t (x int)", 1},
				{"INSERT INTO t VALUES (1)", 4},
				{"SELECT 1", 6},
			},
		},
		{
			name:   "echo lines stripped",
			script: "\\echo Use \"INSTALL EXTENSION foo\" to load this file. \\quit\nSELECT 1;\n\\echo again\nSELECT 2;\n",
			want:   []Statement{{"SELECT 1", 2}, {"SELECT 2", 4}},
		},
		{
			name:   "echo only at line start",
			script: "SELECT '\\echo stays';\n",
			want:   []Statement{{"SELECT '\\echo stays'", 1}},
		},
		{
			name:   "extschema substituted",
			script: "CREATE TABLE @extschema@.t (x int);\nCREATE VIEW @extschema@.v AS SELECT * FROM @extschema@.t;\n",
			schema: "My Schema",
			want: []Statement{
				{`CREATE TABLE "My Schema".t (x int)`, 1},
				{`CREATE VIEW "My Schema".v AS SELECT * FROM "My Schema".t`, 2},
			},
		},
		{
			name:   "schema with a newline keeps lines",
			script: "CREATE TABLE @extschema@.t (x int);\nSELECT 1;\nSELECT FROM FROM;\n",
			schema: "a\nb",
			code:   pgerr.SyntaxError, parts: []string{"install.sql:3: syntax error"},
		},
		{
			name:   "dollar-quoted body with semicolons kept whole",
			script: "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1;\n  RETURN 2;\nEND;\n$body$;\nCOMMENT ON FUNCTION f() IS 'a; b';\n",
			want: []Statement{
				{"CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1;\n  RETURN 2;\nEND;\n$body$", 1},
				{"COMMENT ON FUNCTION f() IS 'a; b'", 7},
			},
		},
		{
			name:   "multibyte text before statements",
			script: "SELECT 'ééé';\nSELECT 'ü';\n",
			want:   []Statement{{"SELECT 'ééé'", 1}, {"SELECT 'ü'", 2}},
		},
		{name: "empty script", script: "-- nothing\n", want: []Statement{}},
		{name: "ANALYZE allowed", script: "ANALYZE;\n", want: []Statement{{"ANALYZE", 1}}},
		{name: "CREATE INDEX allowed", script: "CREATE INDEX i ON t (x);\n", want: []Statement{{"CREATE INDEX i ON t (x)", 1}}},
		{name: "COPY from a file allowed", script: "COPY t FROM '/tmp/x';\n", want: []Statement{{"COPY t FROM '/tmp/x'", 1}}},
		{name: "schema with single quote", script: "SELECT 1;", schema: "a'b", code: pgerr.InvalidParameterValue, parts: []string{"invalid character in schema", "must not contain any of"}},
		{name: "schema with double quote", script: "SELECT 1;", schema: `a"b`, code: pgerr.InvalidParameterValue},
		{name: "schema with dollar", script: "SELECT 1;", schema: "a$b", code: pgerr.InvalidParameterValue},
		{name: "schema with backslash", script: "SELECT 1;", schema: `a\b`, code: pgerr.InvalidParameterValue},
		{name: "schema with NUL", script: "SELECT 1;", schema: "a\x00b", code: pgerr.InvalidParameterValue, parts: []string{"invalid schema name"}},
		{name: "extschema without schema", script: "CREATE TABLE @extschema@.t ();", code: pgerr.InvalidParameterValue, parts: []string{"uses @extschema@ but no schema was given"}},
		{name: "BEGIN refused", script: "SELECT 1;\nBEGIN;\nSELECT 2;\n", code: pgerr.FeatureNotSupported, parts: []string{"install.sql:2: BEGIN is not allowed in an extension script"}},
		{name: "COMMIT refused", script: "SELECT 1;\n\n   COMMIT;\n", code: pgerr.FeatureNotSupported, parts: []string{"install.sql:3: COMMIT"}},
		{name: "END refused", script: "END;", code: pgerr.FeatureNotSupported, parts: []string{"COMMIT is not allowed"}},
		{name: "ROLLBACK refused", script: "ROLLBACK;", code: pgerr.FeatureNotSupported, parts: []string{"ROLLBACK is not allowed"}},
		{name: "SAVEPOINT refused", script: "SAVEPOINT s;", code: pgerr.FeatureNotSupported, parts: []string{"SAVEPOINT"}},
		{name: "PREPARE TRANSACTION refused", script: "PREPARE TRANSACTION 'x';", code: pgerr.FeatureNotSupported, parts: []string{"PREPARE TRANSACTION"}},
		{name: "VACUUM refused", script: "CREATE TABLE t ();\nVACUUM t;\n", code: pgerr.FeatureNotSupported, parts: []string{"install.sql:2: VACUUM is not allowed"}},
		{name: "VACUUM ANALYZE refused", script: "VACUUM ANALYZE;", code: pgerr.FeatureNotSupported, parts: []string{"VACUUM"}},
		{name: "CREATE DATABASE refused", script: "CREATE DATABASE d;", code: pgerr.FeatureNotSupported, parts: []string{"CREATE DATABASE"}},
		{name: "DROP DATABASE refused", script: "DROP DATABASE d;", code: pgerr.FeatureNotSupported, parts: []string{"DROP DATABASE"}},
		{name: "CREATE TABLESPACE refused", script: "CREATE TABLESPACE s LOCATION '/x';", code: pgerr.FeatureNotSupported, parts: []string{"CREATE TABLESPACE"}},
		{name: "DROP TABLESPACE refused", script: "DROP TABLESPACE s;", code: pgerr.FeatureNotSupported, parts: []string{"DROP TABLESPACE"}},
		{name: "ALTER SYSTEM refused", script: "ALTER SYSTEM SET work_mem = '1MB';", code: pgerr.FeatureNotSupported, parts: []string{"ALTER SYSTEM"}},
		{name: "ALTER DATABASE SET TABLESPACE refused", script: "ALTER DATABASE d SET TABLESPACE s;", code: pgerr.FeatureNotSupported, parts: []string{"ALTER DATABASE SET TABLESPACE"}},
		{name: "CREATE INDEX CONCURRENTLY refused", script: "CREATE INDEX CONCURRENTLY i ON t (x);", code: pgerr.FeatureNotSupported, parts: []string{"CREATE INDEX CONCURRENTLY"}},
		{name: "DROP INDEX CONCURRENTLY refused", script: "DROP INDEX CONCURRENTLY i;", code: pgerr.FeatureNotSupported, parts: []string{"DROP INDEX CONCURRENTLY"}},
		{name: "REINDEX CONCURRENTLY refused", script: "REINDEX TABLE CONCURRENTLY t;", code: pgerr.FeatureNotSupported, parts: []string{"REINDEX CONCURRENTLY"}},
		{name: "REINDEX DATABASE refused", script: "REINDEX DATABASE d;", code: pgerr.FeatureNotSupported, parts: []string{"REINDEX DATABASE"}},
		{name: "CLUSTER without table refused", script: "CLUSTER;", code: pgerr.FeatureNotSupported, parts: []string{"CLUSTER"}},
		{name: "DISCARD ALL refused", script: "DISCARD ALL;", code: pgerr.FeatureNotSupported, parts: []string{"DISCARD ALL"}},
		{name: "COPY FROM STDIN refused", script: "COPY t FROM STDIN;", code: pgerr.FeatureNotSupported, parts: []string{"COPY FROM STDIN"}},
		{name: "COPY TO STDOUT refused", script: "COPY t TO STDOUT;", code: pgerr.FeatureNotSupported, parts: []string{"COPY TO STDOUT"}},
		{name: "refused even after a valid prefix", script: "CREATE TABLE t ();\nINSERT INTO t DEFAULT VALUES;\nCOMMIT;", code: pgerr.FeatureNotSupported, parts: []string{"install.sql:3:"}},
		{name: "syntax error line", script: "SELECT 1;\n\nCREATE TABEL t ();\n", code: pgerr.SyntaxError, parts: []string{`install.sql:3: syntax error at or near "TABEL"`}},
		{name: "syntax error after multibyte text", script: "SELECT 'ééé';\nSELEC 1;\n", code: pgerr.SyntaxError, parts: []string{"install.sql:2:"}},
		{name: "syntax error after echo line", script: "\\echo hi\nSELECT 1;\nSELEC 2;\n", code: pgerr.SyntaxError, parts: []string{"install.sql:3:"}},
		{name: "unterminated dollar quote", script: "SELECT 1;\nSELECT $$abc\n", code: pgerr.SyntaxError, parts: []string{"install.sql:2: unterminated dollar-quoted string"}},
		{name: "NUL byte", script: "SELECT 1;\nSELECT '\x00';\n", code: pgerr.CharacterNotInRepertoire, parts: []string{"install.sql:2: invalid byte sequence"}},
		{name: "invalid UTF-8", script: "SELECT '\xff';\n", code: pgerr.CharacterNotInRepertoire, parts: []string{"install.sql:1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PrepareScript("install.sql", tc.script, tc.schema)
			if tc.code != "" {
				wantError(t, err, tc.code, tc.parts...)
				return
			}
			if err != nil {
				t.Fatalf("PrepareScript: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("PrepareScript =\n%#v\nwant\n%#v", got, tc.want)
			}
		})
	}
}

// TestPrepareScriptFixture prepares the fixture package's scripts, as the
// proxy will.
func TestPrepareScriptFixture(t *testing.T) {
	r := testRepo(t)
	p, err := r.Load("foo")
	if err != nil {
		t.Fatal(err)
	}
	script, err := r.Script(p, "install")
	if err != nil {
		t.Fatal(err)
	}
	got, err := PrepareScript("foo/install.sql", script, "public")
	if err != nil {
		t.Fatal(err)
	}
	want := []Statement{
		{`CREATE TABLE "public".foo_items (id int PRIMARY KEY)`, 2},
		{"CREATE FUNCTION \"public\".foo_count() RETURNS bigint LANGUAGE sql\nAS $$ SELECT count(*) FROM \"public\".foo_items; $$", 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PrepareScript =\n%#v\nwant\n%#v", got, want)
	}
}

func TestSubstitutionLines(t *testing.T) {
	text := "a\n@x@ b\n@x@\nc"
	sub := newSubstitution(text, "@x@", "1\n2\n3")
	if sub.count() != 2 {
		t.Fatalf("count %d, want 2", sub.count())
	}
	// Every byte of the original maps to its own line; every byte of a
	// replacement to its placeholder's.
	for off := 0; off <= len(sub.text); off++ {
		got := sub.line(off)
		if got < 1 || got > 4 {
			t.Errorf("line(%d) = %d, outside the original's 4 lines", off, got)
		}
	}
	if got := sub.line(len(sub.text) - 1); got != 4 {
		t.Errorf("last byte on line %d, want 4", got)
	}
	if got := sub.line(len("a\n1\n2\n3 b\n")); got != 3 {
		t.Errorf("second placeholder on line %d, want 3", got)
	}
}
