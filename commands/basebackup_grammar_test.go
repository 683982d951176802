package commands

import (
	"errors"
	"reflect"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestParseBaseBackup(t *testing.T) {
	tests := []struct {
		name, sql string
		want      *BaseBackupStmt
		code      pgerr.Code
		pos       int32
	}{
		{"plain", "BASE BACKUP TO 'nightly/2026-11-23'", &BaseBackupStmt{Path: "nightly/2026-11-23", Options: map[string]string{}}, "", 0},
		{"options", "base backup to 'x' with (format tar, compression zstd level 3, wal stream, label 'My Label', max_rate '32MB', method sql);",
			&BaseBackupStmt{Path: "x", Level: 3, Options: map[string]string{"format": "tar", "compression": "zstd", "wal": "stream",
				"label": "My Label", "max_rate": "32MB", "method": "sql"}}, "", 0},
		{"comments", "BASE /* a */ BACKUP -- b\n TO 'it''s' WITH (CHECKPOINT spread)",
			&BaseBackupStmt{Path: "it's", Options: map[string]string{"checkpoint": "spread"}}, "", 0},
		{"tablespace map", `BASE BACKUP TO 'x' WITH (TABLESPACE_MAP '/a=b', label 'l', tablespace_map '/c\=d=e')`,
			&BaseBackupStmt{Path: "x", Options: map[string]string{"label": "l"}, TablespaceMap: []string{"/a=b", `/c\=d=e`}}, "", 0},
		{"tablespace map not a string", "BASE BACKUP TO 'x' WITH (TABLESPACE_MAP x)", nil, pgerr.SyntaxError, 41},
		{"missing path", "BASE BACKUP TO", nil, pgerr.SyntaxError, 15},
		{"path not a string", "BASE BACKUP TO x", nil, pgerr.SyntaxError, 16},
		{"unknown option", "BASE BACKUP TO 'x' WITH (speed fast)", nil, pgerr.InvalidParameterValue, 26},
		{"bad value", "BASE BACKUP TO 'x' WITH (format zip)", nil, pgerr.InvalidParameterValue, 33},
		{"duplicate", "BASE BACKUP TO 'x' WITH (wal none, wal stream)", nil, pgerr.SyntaxError, 36},
		{"trailing", "BASE BACKUP TO 'x' now", nil, pgerr.SyntaxError, 20},
		{"unclosed", "BASE BACKUP TO 'x' WITH (wal none", nil, pgerr.SyntaxError, 34},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseBaseBackup(tc.sql)
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(st, tc.want) {
					t.Fatalf("got %+v, want %+v", st, tc.want)
				}
				return
			}
			var pe *pgerr.Error
			if !errors.As(err, &pe) || pe.Code != tc.code || pe.Position != tc.pos {
				t.Fatalf("got %v (position %v), want %s at %d", err, pe, tc.code, tc.pos)
			}
		})
	}
}

func TestBackupOptionsTablespaceMap(t *testing.T) {
	st, err := ParseBaseBackup(`BASE BACKUP TO 'x' WITH (TABLESPACE_MAP '/srv/spc1=spc/one', TABLESPACE_MAP '/srv/a\=b=spc/a\=b')`)
	if err != nil {
		t.Fatal(err)
	}
	o, err := backupOptionsFrom(st)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/srv/spc1": "spc/one", "/srv/a=b": "spc/a=b"}
	if !reflect.DeepEqual(o.TablespaceMap, want) {
		t.Fatalf("TablespaceMap = %v, want %v", o.TablespaceMap, want)
	}
	for _, bad := range []string{`'/srv/spc1'`, `'=x'`, `'/srv/spc1='`, `'/a=x', TABLESPACE_MAP '/a=y'`} {
		st, err := ParseBaseBackup("BASE BACKUP TO 'x' WITH (TABLESPACE_MAP " + bad + ")")
		if err != nil {
			t.Fatal(err)
		}
		var pe *pgerr.Error
		if _, err := backupOptionsFrom(st); !errors.As(err, &pe) || pe.Code != pgerr.InvalidParameterValue {
			t.Errorf("TABLESPACE_MAP %s: %v, want 22023", bad, err)
		}
	}
}
