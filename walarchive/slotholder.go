package walarchive

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// SlotHolder is the walsender that has a replication slot active on the
// upstream: another pgverbs's archive, a pg_receivewal, a standby.
type SlotHolder struct {
	// PID is pg_replication_slots.active_pid.
	PID int
	// ApplicationName and ClientAddr are pg_stat_replication's for that
	// PID, "" when the role asking may not see them (or the walsender is
	// gone meanwhile).
	ApplicationName string
	ClientAddr      string
}

// SlotCheck asks the upstream who holds slot, nil when nobody does. START
// WAL ARCHIVE's caller gives one (Manager.StartChecked) that asks over an
// ordinary SQL session: the archive's own connections are physical
// replication ones, which cannot read pg_replication_slots.
type SlotCheck func(ctx context.Context, slot string) (*SlotHolder, error)

// slotReleaseWait is how long START waits for a holder to go before it
// refuses: the walsender of an archive just stopped (here, or in the
// other instance) takes a moment to exit after its connection closed.
const slotReleaseWait = 3 * time.Second

// ErrSlotInUse is the cause of the error for a slot another walsender
// holds.
var ErrSlotInUse = errors.New("walarchive: the replication slot is in use")

// SlotInUseError is the error for slot held by h: 55006 naming the
// holder, with a HINT on the two ways out. Only one walsender can stream
// from a slot at a time, so two pgverbs instances never archive one slot
// at once; this says which one has it.
func SlotInUseError(slot string, h SlotHolder) *pgerr.Error {
	var who []string
	if h.PID != 0 {
		who = append(who, "PID "+strconv.Itoa(h.PID))
	}
	if h.ApplicationName != "" {
		who = append(who, "application_name "+h.ApplicationName)
	}
	if h.ClientAddr != "" {
		who = append(who, "client "+h.ClientAddr)
	}
	msg := fmt.Sprintf("replication slot %q is in use by another WAL archive", slot)
	if len(who) > 0 {
		msg += " (" + strings.Join(who, ", ") + ")"
	}
	e := pgerr.New(pgerr.ObjectInUse, "%s", msg).WithCause(ErrSlotInUse)
	e.Detail = "A replication slot streams to one client at a time; another pgverbs instance (or another WAL receiver) is using this one."
	e.Hint = "Archive through another slot (START WAL ARCHIVE ... WITH (SLOT 'name')), or STOP WAL ARCHIVE where the other archive runs."
	return e
}

// checkSlotFree runs check until slot is free or slotReleaseWait has
// passed, and returns SlotInUseError for a holder that stayed.
func checkSlotFree(ctx context.Context, check SlotCheck, slot string) error {
	deadline := time.Now().Add(slotReleaseWait)
	for {
		h, err := check(ctx, slot)
		if err != nil {
			return err
		}
		if h == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return SlotInUseError(slot, *h)
		}
		select {
		case <-ctx.Done():
			// As Stop returns it: the cancel or the client leaving.
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// activePID matches the PID in the server's "replication slot "x" is
// active for PID n" (ReplicationSlotAcquire); in another lc_messages the
// PID stays unknown and the error says less.
var activePID = regexp.MustCompile(`(?i)\bPID (\d+)`)

// slotTaken turns START_REPLICATION's refusal of a slot that another
// walsender holds into SlotInUseError; other errors come back as nil.
// A running archive meets it when, between two of its connections,
// another instance started archiving the same slot.
func slotTaken(slot string, err error) *pgerr.Error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != string(pgerr.ObjectInUse) {
		return nil
	}
	var h SlotHolder
	if m := activePID.FindStringSubmatch(pe.Message); m != nil {
		h.PID, _ = strconv.Atoi(m[1])
	}
	return SlotInUseError(slot, h)
}
