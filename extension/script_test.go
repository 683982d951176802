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
				{SQL: "CREATE TABLE t (x int)", Line: 1},
				{SQL: "INSERT INTO t VALUES (1)", Line: 4},
				{SQL: "SELECT 1", Line: 6},
			},
		},
		{
			name:   "echo lines stripped",
			script: "\\echo Use \"INSTALL EXTENSION foo\" to load this file. \\quit\nSELECT 1;\n\\echo again\nSELECT 2;\n",
			want:   []Statement{{SQL: "SELECT 1", Line: 2}, {SQL: "SELECT 2", Line: 4}},
		},
		{
			name:   "echo only at line start",
			script: "SELECT '\\echo stays';\n",
			want:   []Statement{{SQL: "SELECT '\\echo stays'", Line: 1}},
		},
		{
			name:   "extschema substituted",
			script: "CREATE TABLE @extschema@.t (x int);\nCREATE VIEW @extschema@.v AS SELECT * FROM @extschema@.t;\n",
			schema: "My Schema",
			want: []Statement{
				{SQL: `CREATE TABLE "My Schema".t (x int)`, Line: 1},
				{SQL: `CREATE VIEW "My Schema".v AS SELECT * FROM "My Schema".t`, Line: 2},
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
				{SQL: "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1;\n  RETURN 2;\nEND;\n$body$", Line: 1},
				{SQL: "COMMENT ON FUNCTION f() IS 'a; b'", Line: 7},
			},
		},
		{
			name:   "multibyte text before statements",
			script: "SELECT 'ééé';\nSELECT 'ü';\n",
			want:   []Statement{{SQL: "SELECT 'ééé'", Line: 1}, {SQL: "SELECT 'ü'", Line: 2}},
		},
		{name: "empty script", script: "-- nothing\n", want: []Statement{}},
		{name: "ANALYZE allowed", script: "ANALYZE;\n", want: []Statement{{SQL: "ANALYZE", Line: 1}}},
		{name: "CREATE INDEX allowed", script: "CREATE INDEX i ON t (x);\n", want: []Statement{{SQL: "CREATE INDEX i ON t (x)", Line: 1}}},
		{name: "COPY from a file allowed", script: "COPY t FROM '/tmp/x';\n", want: []Statement{{SQL: "COPY t FROM '/tmp/x'", Line: 1}}},
		{name: "schema with single quote", script: "SELECT '@extschema@';", schema: "a'b", code: pgerr.InvalidParameterValue, parts: []string{`invalid character in extension "install.sql" schema: must not contain any of ""$'\"`}},
		{name: "schema with double quote", script: "SELECT @extschema@.f();", schema: `a"b`, code: pgerr.InvalidParameterValue},
		{name: "schema with dollar", script: "SELECT @extschema@.f();", schema: "a$b", code: pgerr.InvalidParameterValue},
		{name: "schema with backslash", script: "SELECT @extschema@.f();", schema: `a\b`, code: pgerr.InvalidParameterValue},
		{name: "unused schema with a quote", script: "SELECT 1;", schema: "a'b", want: []Statement{{SQL: "SELECT 1", Line: 1}}},
		{name: "schema with NUL", script: "SELECT 1;", schema: "a\x00b", code: pgerr.InvalidParameterValue, parts: []string{"invalid name"}},
		{
			name:   "extschema quoted only when needed",
			script: "SELECT @extschema@.f(), '@extschema@,pg_temp';",
			schema: "public",
			want:   []Statement{{SQL: "SELECT public.f(), 'public,pg_temp'", Line: 1}},
		},
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
		{SQL: `CREATE TABLE public.foo_items (id int PRIMARY KEY)`, Line: 2},
		{SQL: "CREATE FUNCTION public.foo_count() RETURNS bigint LANGUAGE sql\nAS $$ SELECT count(*) FROM public.foo_items; $$", Line: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PrepareScript =\n%#v\nwant\n%#v", got, want)
	}
}

func TestSubstitutionLines(t *testing.T) {
	text := "a\n@x@ b\n@x@\nc"
	sub, hit := substituteLines(text, []replacement{{"@x@", "1\n2\n3"}, {"@y@", "z"}})
	if !hit[0] || hit[1] {
		t.Fatalf("hit = %v, want [true false]", hit)
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

func TestPrepareScriptOpts(t *testing.T) {
	full := ScriptOptions{
		Schema: "app", Owner: "alice",
		RequiredSchemas: map[string]string{"multi": "m s", "plpgsql": "pg_catalog"},
		ModulePathname:  "$libdir/cext",
	}
	for _, tc := range []struct {
		name   string
		script string
		opts   ScriptOptions
		want   []Statement
		code   pgerr.Code
		parts  []string
	}{
		{
			name:   "MODULE_PATHNAME",
			script: "CREATE FUNCTION f() RETURNS int\nAS 'MODULE_PATHNAME', 'f' LANGUAGE C;\n",
			opts:   full,
			want:   []Statement{{SQL: "CREATE FUNCTION f() RETURNS int\nAS '$libdir/cext', 'f' LANGUAGE C", Line: 1}},
		},
		{
			name:   "MODULE_PATHNAME kept without module_pathname",
			script: "LOAD 'MODULE_PATHNAME';",
			opts:   ScriptOptions{Schema: "app"},
			want:   []Statement{{SQL: "LOAD 'MODULE_PATHNAME'", Line: 1}},
		},
		{
			name:   "extowner",
			script: "ALTER TABLE @extschema@.t OWNER TO @extowner@;",
			opts:   full,
			want:   []Statement{{SQL: `ALTER TABLE app.t OWNER TO alice`, Line: 1}},
		},
		{
			name:   "extschema of a required extension",
			script: "CREATE VIEW v AS SELECT * FROM @extschema:multi@.multi_t;\nSELECT @extschema:plpgsql@.now();",
			opts:   full,
			want: []Statement{
				{SQL: `CREATE VIEW v AS SELECT * FROM "m s".multi_t`, Line: 1},
				{SQL: `SELECT pg_catalog.now()`, Line: 2},
			},
		},
		{
			name:   "passes in PostgreSQL's order, each over the one before",
			script: "SELECT '@extschema@', 'MODULE_PATHNAME', '@extowner@';",
			opts:   ScriptOptions{Schema: "MODULE_PATHNAME", Owner: "@extschema@", ModulePathname: "@extowner@"},
			want:   []Statement{{SQL: `SELECT '"@extowner@"', '@extowner@', '""@extowner@""'`, Line: 1}},
		},
		{
			name:   "lines after multi-line values",
			script: "SELECT @extowner@;\nSELECT @extschema:multi@;\nSELEC 1;\n",
			opts:   ScriptOptions{Schema: "s", Owner: "a\nb", RequiredSchemas: map[string]string{"multi": "x\ny\nz"}},
			code:   pgerr.SyntaxError, parts: []string{"f.sql:3: syntax error"},
		},
		{name: "extowner without owner", script: "SELECT @extowner@;", opts: ScriptOptions{Schema: "s"}, code: pgerr.InvalidParameterValue, parts: []string{`"f.sql" uses @extowner@ but no owner was given`}},
		{name: "owner with a quote", script: "SELECT @extowner@;", opts: ScriptOptions{Owner: `a"b`}, code: pgerr.InvalidParameterValue, parts: []string{`invalid character in extension owner: must not contain any of ""$'\"`}},
		{name: "unused owner with a quote", script: "SELECT 1;", opts: ScriptOptions{Owner: `a'b`}, want: []Statement{{SQL: "SELECT 1", Line: 1}}},
		{name: "unknown required extension left as written", script: "SELECT '@extschema:ghost@';", opts: full, want: []Statement{{SQL: "SELECT '@extschema:ghost@'", Line: 1}}},
		{name: "required schema with a dollar", script: "SELECT @extschema:x@.f();", opts: ScriptOptions{RequiredSchemas: map[string]string{"x": "a$b"}}, code: pgerr.InvalidParameterValue, parts: []string{`invalid character in extension "x" schema`}},
		{name: "relocatable keeps extschema", script: "SELECT '@extschema@';", opts: ScriptOptions{Schema: "a'b", Relocatable: true}, want: []Statement{{SQL: "SELECT '@extschema@'", Line: 1}}},
		{name: "quote_all_identifiers", script: "SELECT @extschema@.f();", opts: ScriptOptions{Schema: "app", QuoteAll: true}, want: []Statement{{SQL: `SELECT "app".f()`, Line: 1}}},
		{name: "extschema without schema", script: "SELECT @extschema@.f();", opts: ScriptOptions{}, code: pgerr.InvalidParameterValue, parts: []string{"uses @extschema@ but no schema was given"}},
		{name: "schema with a quote, unused", script: "SELECT 1;", opts: ScriptOptions{Schema: "a'b"}, want: []Statement{{SQL: "SELECT 1", Line: 1}}},
		{name: "statements still refused", script: "SELECT 1;\nCOMMIT;", opts: full, code: pgerr.FeatureNotSupported, parts: []string{"f.sql:2: COMMIT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PrepareScriptOpts("f.sql", tc.script, tc.opts)
			if tc.code != "" {
				wantError(t, err, tc.code, tc.parts...)
				return
			}
			if err != nil {
				t.Fatalf("PrepareScriptOpts: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("PrepareScriptOpts =\n%#v\nwant\n%#v", got, tc.want)
			}
		})
	}
}

// TestPrepareScriptUnchanged checks that PrepareScript still substitutes
// only @extschema@.
func TestPrepareScriptUnchanged(t *testing.T) {
	got, err := PrepareScript("f.sql", "SELECT '@extowner@', '@extschema:x@', 'MODULE_PATHNAME', @extschema@.f();", "s")
	if err != nil {
		t.Fatal(err)
	}
	want := []Statement{{SQL: `SELECT '@extowner@', '@extschema:x@', 'MODULE_PATHNAME', s.f()`, Line: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PrepareScript = %#v, want %#v", got, want)
	}
}
