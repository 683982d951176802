package commands

import "testing"

func TestParseAlterUpdate(t *testing.T) {
	tests := []struct {
		name, sql string
		ok        bool
		want      AlterUpdateStmt
	}{
		{"update", "ALTER EXTENSION foo UPDATE", true, AlterUpdateStmt{Name: "foo"}},
		{"update to", "alter extension Foo update to '2.0';", true, AlterUpdateStmt{Name: "foo", Version: "2.0"}},
		{"comments and quoted name", `ALTER /* c */ EXTENSION "My Ext" -- x
UPDATE TO 1.1`, true, AlterUpdateStmt{Name: "My Ext", Version: "1.1"}},
		{"set schema is the server's", "ALTER EXTENSION foo SET SCHEMA bar", false, AlterUpdateStmt{}},
		{"add member is the server's", "ALTER EXTENSION foo ADD FUNCTION f()", false, AlterUpdateStmt{}},
		{"trailing junk is the server's", "ALTER EXTENSION foo UPDATE TO '2' x", false, AlterUpdateStmt{}},
		{"not alter extension", "ALTER TABLE foo ADD COLUMN x int", false, AlterUpdateStmt{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, ok := ParseAlterUpdate(tc.sql)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && *st != tc.want {
				t.Fatalf("got %+v, want %+v", *st, tc.want)
			}
		})
	}
}
