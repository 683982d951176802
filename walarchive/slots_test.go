package walarchive

import (
	"errors"
	"os"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// slotManager is a Manager with a run on a temporary directory and no
// receiver, enough for the slot operations.
func slotManager(t *testing.T) (*Manager, *archiveRun) {
	t.Helper()
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	m := NewManager(Config{})
	run := &archiveRun{dir: root, st: state{SegmentSize: 16 << 20}, slots: map[string]*Slot{}}
	m.cur = run
	m.status.Flushed, m.status.Timeline = 0x3000060, 2
	return m, run
}

func code(err error) pgerr.Code {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestSlots(t *testing.T) {
	m, run := slotManager(t)
	s, err := m.CreateSlot("keep", false, true, 10)
	if err != nil {
		t.Fatal(err)
	}
	if s.RestartLSN != 0x3000060 || s.RestartTLI != 2 || s.ActivePID != 0 {
		t.Errorf("RESERVE_WAL slot %+v, want the durable end, inactive", s)
	}
	if _, err := m.CreateSlot("tmp", true, false, 10); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]pgerr.Code{"keep": pgerr.DuplicateObject, "Bad": pgerr.InvalidName, "": pgerr.InvalidName} {
		if _, err := m.CreateSlot(name, false, false, 10); code(err) != want {
			t.Errorf("CreateSlot(%q): %v, want %s", name, err, want)
		}
	}
	if err := m.DropSlot("tmp", 11); code(err) != pgerr.ObjectInUse {
		t.Errorf("dropping another connection's temporary slot: %v, want 55006", err)
	}
	if _, err := m.AcquireSlot("keep", 12); err != nil {
		t.Fatal(err)
	}
	if _, err := m.AcquireSlot("keep", 13); code(err) != pgerr.ObjectInUse {
		t.Errorf("acquiring an active slot: %v, want 55006", err)
	}
	m.AdvanceSlot("keep", 0x2000000, 1, 0, 0)
	if s, _ := m.ReadSlot("keep"); s.RestartLSN != 0x3000060 {
		t.Errorf("the slot moved back to %X", s.RestartLSN)
	}
	m.AdvanceSlot("keep", 0x4000000, 2, 77, 0)
	if s, _ := m.ReadSlot("keep"); s.RestartLSN != 0x4000000 || s.Xmin != 77 {
		t.Errorf("after AdvanceSlot: %+v", s)
	}
	m.mu.Lock()
	floor := m.slotFloorLocked()
	m.mu.Unlock()
	if floor != 0x4000000 {
		t.Errorf("retention floor %X, want the slot's restart_lsn (the temporary slot reserves nothing)", floor)
	}
	m.ReleaseSlot("keep", 12)
	m.ReleaseSlots(10) // the temporary slot's connection ends
	if _, ok := m.ReadSlot("tmp"); ok {
		t.Error("the temporary slot outlived its connection")
	}
	// The persistent slot is on disk with its last advance; the
	// temporary one never was.
	saved, err := loadSlots(run.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved) != 1 || saved["keep"] == nil || saved["keep"].RestartLSN != 0x4000000 {
		t.Errorf("%s holds %+v", SlotsFile, saved)
	}
	if err := m.DropSlot("keep", 0); err != nil {
		t.Fatal(err)
	}
	if err := m.DropSlot("keep", 0); code(err) != pgerr.UndefinedObject {
		t.Errorf("dropping a missing slot: %v, want 42704", err)
	}
	if saved, _ := loadSlots(run.dir); len(saved) != 0 {
		t.Errorf("after DROP: %+v", saved)
	}
}

func TestSlotsUnreadable(t *testing.T) {
	m, run := slotManager(t)
	run.slotsBroken = true
	if _, err := m.CreateSlot("keep", false, false, 1); code(err) != pgerr.ObjectNotInPrerequisiteState {
		t.Errorf("a persistent slot over an unreadable %s: %v, want 55000", SlotsFile, err)
	}
	if _, err := m.CreateSlot("tmp", true, false, 1); err != nil {
		t.Errorf("a temporary slot needs no file: %v", err)
	}
}
