package walarchive

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestSlotInUseError(t *testing.T) {
	e := SlotInUseError("pgverbs", SlotHolder{PID: 1234, ApplicationName: "pgverbs", ClientAddr: "10.0.0.2"})
	want := `replication slot "pgverbs" is in use by another WAL archive (PID 1234, application_name pgverbs, client 10.0.0.2)`
	if e.Code != pgerr.ObjectInUse || e.Message != want || e.Hint == "" || !errors.Is(e, ErrSlotInUse) {
		t.Fatalf("got %s %q hint %q", e.Code, e.Message, e.Hint)
	}
	if e := SlotInUseError("s", SlotHolder{}); e.Message != `replication slot "s" is in use by another WAL archive` {
		t.Fatalf("no holder known: %q", e.Message)
	}
	// START_REPLICATION's refusal, as ReplicationSlotAcquire words it.
	pe := &pgconn.PgError{Code: "55006", Message: `replication slot "pgverbs" is active for PID 4321`}
	got := slotTaken("pgverbs", fmt.Errorf("wrapped: %w", pe))
	if got == nil || !strings.Contains(got.Message, "(PID 4321)") {
		t.Fatalf("slotTaken: %v", got)
	}
	if slotTaken("pgverbs", &pgconn.PgError{Code: "58P01"}) != nil || slotTaken("pgverbs", errors.New("x")) != nil {
		t.Fatal("slotTaken took another error")
	}
}

func TestCheckSlotFree(t *testing.T) {
	calls := 0
	// Held for two looks, then released: the walsender of an archive
	// just stopped.
	err := checkSlotFree(context.Background(), func(context.Context, string) (*SlotHolder, error) {
		calls++
		if calls <= 2 {
			return &SlotHolder{PID: 7}, nil
		}
		return nil, nil
	}, "s")
	if err != nil || calls != 3 {
		t.Fatalf("released slot: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = checkSlotFree(ctx, func(context.Context, string) (*SlotHolder, error) { return &SlotHolder{PID: 7}, nil }, "s")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v", err)
	}
}
