package extension

import (
	"reflect"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestQuoteIdentifier(t *testing.T) {
	for _, tc := range []struct {
		name string
		all  bool
		want string
	}{
		{"public", false, "public"},
		{"_x1", false, "_x1"},
		{"action", false, "action"}, // unreserved keyword
		{"user", false, `"user"`},   // reserved
		{"select", false, `"select"`},
		{"int", false, `"int"`},   // column-name keyword
		{"left", false, `"left"`}, // type/function-name keyword
		{"Public", false, `"Public"`},
		{"1a", false, `"1a"`},
		{"my schema", false, `"my schema"`},
		{`a"b`, false, `"a""b"`},
		{"", false, `""`},
		{"public", true, `"public"`},
	} {
		if got := QuoteIdentifier(tc.name, tc.all); got != tc.want {
			t.Errorf("QuoteIdentifier(%q, %v) = %s, want %s", tc.name, tc.all, got, tc.want)
		}
	}
}

func TestScriptStatements(t *testing.T) {
	opts := ScriptOptions{Extension: "ext", Schema: "app", Owner: "alice"}
	for _, tc := range []struct {
		name   string
		script string
		want   []Statement
		code   pgerr.Code
		parts  []string
	}{
		{
			name:   "config dump qualified and not",
			script: "SELECT pg_catalog.pg_extension_config_dump('@extschema@.t', '');\nSELECT pg_extension_config_dump('t2', $$WHERE x > 1$$);",
			want: []Statement{
				{SQL: "SELECT pgverbs.extension_config_dump('app.t', '')", Line: 1},
				{SQL: "SELECT pgverbs.extension_config_dump('t2', $$WHERE x > 1$$)", Line: 2},
			},
		},
		{
			name:   "config dump in comments, strings and other schemas kept",
			script: "SELECT 'pg_extension_config_dump(' /* pg_extension_config_dump( */, other.pg_extension_config_dump('t', '');",
			want:   []Statement{{SQL: "SELECT 'pg_extension_config_dump(' /* pg_extension_config_dump( */, other.pg_extension_config_dump('t', '')", Line: 1}},
		},
		{
			name:   "config dump inside DO rewritten",
			script: "DO $x$ BEGIN PERFORM pg_catalog.pg_extension_config_dump('t', ''); END $x$;\nDO 'BEGIN PERFORM pg_extension_config_dump(''t'', ''''); END';",
			want: []Statement{
				{SQL: "DO $x$ BEGIN PERFORM pgverbs.extension_config_dump('t', ''); END $x$", Line: 1},
				{SQL: "DO 'BEGIN PERFORM pgverbs.extension_config_dump(''t'', ''''); END'", Line: 2},
			},
		},
		{
			name:   "function bodies are stored as written",
			script: "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SELECT pg_catalog.pg_extension_config_dump('t', '') $$;",
			want:   []Statement{{SQL: "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ SELECT pg_catalog.pg_extension_config_dump('t', '') $$", Line: 1}},
		},
		{
			name:   "SET and SET LOCAL",
			script: "SET client_encoding = 'UTF8';\nSET LOCAL Search_Path TO x;\nRESET check_function_bodies;\nRESET ALL;\nSET TRANSACTION READ ONLY;",
			want: []Statement{
				{SQL: "SET client_encoding = 'UTF8'", Line: 1, Set: &SetStmt{Name: "client_encoding"}},
				{SQL: "SET LOCAL Search_Path TO x", Line: 2, Set: &SetStmt{Name: "search_path", Local: true}},
				{SQL: "RESET check_function_bodies", Line: 3, Set: &SetStmt{Name: "check_function_bodies"}},
				{SQL: "RESET ALL", Line: 4, Set: &SetStmt{}},
				{SQL: "SET TRANSACTION READ ONLY", Line: 5},
			},
		},
		{
			name: "ALTER EXTENSION ADD and DROP",
			script: "ALTER EXTENSION ext ADD FUNCTION @extschema@.f(integer, text[]);\nALTER EXTENSION ext DROP TABLE t;\n" +
				"ALTER EXTENSION ext ADD TYPE s.my_type;\nALTER EXTENSION ext ADD CAST (int4 AS s.t);\nALTER EXTENSION ext ADD OPERATOR CLASS s.oc USING btree;\n" +
				"ALTER EXTENSION ext ADD SCHEMA s;\nALTER EXTENSION ext ADD FUNCTION g;\nALTER EXTENSION ext ADD OPERATOR - (NONE, integer);",
			want: []Statement{
				{SQL: "ALTER EXTENSION ext ADD FUNCTION app.f(integer, text[])", Line: 1, Membership: &Membership{Add: true, Type: "function", Names: []string{"app", "f"}, Args: []string{"int", "text[]"}, Description: "function app.f(int, text[])"}},
				{SQL: "ALTER EXTENSION ext DROP TABLE t", Line: 2, Membership: &Membership{Type: "table", Names: []string{"t"}, Description: "table t"}},
				{SQL: "ALTER EXTENSION ext ADD TYPE s.my_type", Line: 3, Membership: &Membership{Add: true, Type: "type", Names: []string{"s.my_type"}, Description: "type s.my_type"}},
				{SQL: "ALTER EXTENSION ext ADD CAST (int4 AS s.t)", Line: 4, Membership: &Membership{Add: true, Type: "cast", Names: []string{"int4"}, Args: []string{"s.t"}, Description: "cast int4(s.t)"}},
				{SQL: "ALTER EXTENSION ext ADD OPERATOR CLASS s.oc USING btree", Line: 5, Membership: &Membership{Add: true, Type: "operator class", Names: []string{"s", "oc"}, Args: []string{"btree"}, Description: "operator class s.oc(btree)"}},
				{SQL: "ALTER EXTENSION ext ADD SCHEMA s", Line: 6, Membership: &Membership{Add: true, Type: "schema", Names: []string{"s"}, Description: "schema s"}},
				{SQL: "ALTER EXTENSION ext ADD FUNCTION g", Line: 7, Membership: &Membership{Add: true, Type: "function", Names: []string{"g"}, ByName: true, Description: "function g"}},
				{SQL: "ALTER EXTENSION ext ADD OPERATOR - (NONE, integer)", Line: 8, Membership: &Membership{Add: true, Type: "operator", Names: []string{"-"}, Args: []string{"", "int"}, Description: "operator -(, int)"}},
			},
		},
		{
			name:   "ALTER EXTENSION of another extension refused",
			script: "SELECT 1;\nALTER EXTENSION other ADD TABLE t;",
			code:   pgerr.FeatureNotSupported, parts: []string{`f.sql:2: ALTER EXTENSION "other" ADD|DROP is not allowed in the script of extension "ext"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PrepareScriptOpts("f.sql", tc.script, opts)
			if tc.code != "" {
				wantError(t, err, tc.code, tc.parts...)
				return
			}
			if err != nil {
				t.Fatalf("PrepareScriptOpts: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				for i := range got {
					if i < len(tc.want) && !reflect.DeepEqual(got[i], tc.want[i]) {
						t.Errorf("statement %d =\n%#v %#v\nwant\n%#v %#v", i, got[i], got[i].Membership, tc.want[i], tc.want[i].Membership)
					}
				}
				if len(got) != len(tc.want) {
					t.Errorf("%d statements, want %d", len(got), len(tc.want))
				}
			}
		})
	}
}
