package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestBaseBackupStandby takes BASE BACKUP ... WITH (STANDBY on) through
// the proxy and starts the backup as it is: it comes up as a standby that
// streams through pgverbs (the primary's one walsender serves pgverbs's
// relayed connection) and replays a row written after the backup.
func TestBaseBackupStandby(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	ctx := testCtx(t)
	root := t.TempDir()
	p := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root)
	if out, err := psql(t, c, p.URL("postgres", "", "postgres"), "-c", "BASE BACKUP TO 'sb' WITH (STANDBY on)"); err != nil {
		t.Fatalf("psql BASE BACKUP: %v\n%s", err, out)
	} else if !strings.Contains(out, "no restore_command") {
		t.Errorf("no NOTICE about the missing restore_command (no http_listen):\n%s", out)
	}
	dir := filepath.Join(root, "sb")
	if _, err := os.Stat(filepath.Join(dir, "standby.signal")); err != nil {
		t.Fatalf("standby.signal: %v", err)
	}
	auto, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("primary_conninfo = 'host=''%s'' port=''%d'' user=''postgres'' application_name=''sb'''", p.Host, p.Port)
	if !strings.Contains(string(auto), want) {
		t.Fatalf("postgresql.auto.conf has no %s:\n%s", want, auto)
	}
	if strings.Contains(string(auto), "restore_command") {
		t.Errorf("restore_command written without an HTTP listener:\n%s", auto)
	}

	sb := pgtest.StartCopy(t, dir, pgtest.Options{BinDir: c.BinDir, Password: c.Password}, nil)
	if err := c.Exec(ctx, "CREATE TABLE after_backup AS SELECT 42 AS answer"); err != nil {
		t.Fatal(err)
	}
	primary, standby := connect(t, c.SuperURL()), connect(t, sb.SuperURL())
	deadline := time.Now().Add(60 * time.Second)
	for {
		var streaming int
		var app string
		err := primary.QueryRow(ctx, "SELECT count(*), coalesce(max(application_name), '') FROM pg_stat_replication WHERE state = 'streaming'").Scan(&streaming, &app)
		if err != nil {
			t.Fatal(err)
		}
		var answer int
		rerr := standby.QueryRow(ctx, "SELECT answer FROM after_backup").Scan(&answer)
		if streaming == 1 && app == "sb" && rerr == nil && answer == 42 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby not streaming through pgverbs: %d streaming (application_name %q), replay: %v\nstandby log:\n%s", streaming, app, rerr, sb.ServerLog())
		}
		select {
		case <-ctx.Done():
			t.Fatal(context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
