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

func TestBaseBackupStandbyOptions(t *testing.T) {
	src := StandbySource{Listen: "127.0.0.1:6432", Executable: "/usr/local/bin/pgverbs"}
	refusals := []struct {
		name, sql string
		src       StandbySource
		code      pgerr.Code
		hint      bool
	}{
		{"tar", "BASE BACKUP TO 'x' WITH (STANDBY on, FORMAT tar)", src, pgerr.FeatureNotSupported, true},
		{"host without standby", "BASE BACKUP TO 'x' WITH (STANDBY_HOST 'h')", src, pgerr.InvalidParameterValue, true},
		{"wildcard listen", "BASE BACKUP TO 'x' WITH (STANDBY on)", StandbySource{Listen: "0.0.0.0:6432"}, pgerr.InvalidParameterValue, true},
		{"empty listen host", "BASE BACKUP TO 'x' WITH (STANDBY on)", StandbySource{Listen: ":6432"}, pgerr.InvalidParameterValue, true},
		{"ipv6 wildcard", "BASE BACKUP TO 'x' WITH (STANDBY on)", StandbySource{Listen: "[::]:6432"}, pgerr.InvalidParameterValue, true},
		{"empty host", "BASE BACKUP TO 'x' WITH (STANDBY on, STANDBY_HOST '')", src, pgerr.InvalidParameterValue, false},
		{"bad value", "BASE BACKUP TO 'x' WITH (STANDBY maybe)", src, pgerr.InvalidParameterValue, true},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBaseBackup("/b", nil, tc.src).Parse(tc.sql)
			var pe *pgerr.Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("got %v, want %s", err, tc.code)
			}
			if tc.hint && pe.Hint == "" {
				t.Errorf("%s: no HINT", pe.Message)
			}
		})
	}

	plans := []struct {
		name, sql         string
		src               StandbySource
		conninfo, restore string
		notice            bool
	}{
		{"no http", "BASE BACKUP TO 'a/sb1' WITH (STANDBY on)", src,
			`host='127.0.0.1' port='6432' user='o\'k' application_name='sb1'`, "", true},
		{"wildcard with host", "BASE BACKUP TO 'sb/' WITH (STANDBY on, STANDBY_HOST 'Relay.example')",
			StandbySource{Listen: "0.0.0.0:6432", HTTPListen: "0.0.0.0:9187", HTTPS: true, TokenFile: "/etc/pgverbs/token file", Executable: "/usr/bin/pgverbs"},
			`host='Relay.example' port='6432' user='o\'k' application_name='sb'`,
			`/usr/bin/pgverbs wal-get --url https://Relay.example:9187 --token-file '/etc/pgverbs/token file' --partial %f %p`, false},
		{"http", "BASE BACKUP TO 'sb' WITH (STANDBY on)",
			StandbySource{Listen: "[::1]:6432", HTTPListen: "127.0.0.1:9187", Executable: "/opt/it's/pgverbs"},
			`host='::1' port='6432' user='o\'k' application_name='sb'`,
			`'/opt/it'\''s/pgverbs' wal-get --url http://127.0.0.1:9187 --partial %f %p`, false},
		{"inline token", "BASE BACKUP TO 'sb' WITH (STANDBY true)",
			StandbySource{Listen: "127.0.0.1:6432", HTTPListen: "127.0.0.1:9187", InlineToken: true, Executable: "/p"},
			`host='127.0.0.1' port='6432' user='o\'k' application_name='sb'`, "", true},
	}
	for _, tc := range plans {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := NewBaseBackup("/b", nil, tc.src).Parse(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			p := pr.(*backupRun).standby
			if got := p.conninfo("o'k"); got != tc.conninfo {
				t.Errorf("conninfo = %s, want %s", got, tc.conninfo)
			}
			if p.restoreCommand != tc.restore {
				t.Errorf("restore_command = %s, want %s", p.restoreCommand, tc.restore)
			}
			if (p.notice != "") != tc.notice {
				t.Errorf("notice %q, want one: %v", p.notice, tc.notice)
			}
		})
	}
	if pr, err := NewBaseBackup("/b", nil, src).Parse("BASE BACKUP TO 'x' WITH (STANDBY off)"); err != nil || pr.(*backupRun).standby != nil {
		t.Fatalf("STANDBY off: %v, %+v", err, pr)
	}
}
