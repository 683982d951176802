package walarchive

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// SlotsFile holds the archive's own replication slots, those standbys
// created through pgverbs's walsender; it lives in the archive directory
// beside StateFile, so that the slots live as long as the WAL they hold.
const SlotsFile = "pgverbs_wal_slots.json"

// Slot is one of pgverbs's own physical replication slots.
type Slot struct {
	Name string
	// RestartLSN is the oldest WAL the slot's standby still needs (0: the
	// slot reserves nothing yet), on RestartTLI.
	RestartLSN uint64
	RestartTLI uint32
	Temporary  bool
	// ActivePID is the process id of the connection using the slot (the
	// one pgverbs's walsender shows the standby), 0 when none.
	ActivePID uint32
	// Xmin and CatalogXmin are the standby's last hot-standby feedback
	// through this slot (0: none).
	Xmin, CatalogXmin uint32
}

// slotJSON is a persistent Slot as SlotsFile holds it.
type slotJSON struct {
	Name       string `json:"name"`
	RestartLSN uint64 `json:"restart_lsn"`
	RestartTLI uint32 `json:"restart_tli"`
}

// slotSaveInterval bounds how often an advancing slot is written: a
// crash then loses at most this much advancement, which only keeps more
// WAL (PostgreSQL saves slots at checkpoints for the same reason).
const slotSaveInterval = 10 * time.Second

// maxSlotName is NAMEDATALEN-1, PostgreSQL's limit on a slot's name.
const maxSlotName = 63

// CheckSlotName refuses a name PostgreSQL would refuse, with its errors
// (ReplicationSlotValidateName).
func CheckSlotName(name string) error {
	if name == "" {
		return pgerr.New(pgerr.InvalidName, "replication slot name \"%s\" is too short", name)
	}
	if len(name) > maxSlotName {
		return pgerr.New(pgerr.NameTooLong, "replication slot name \"%s\" is too long", name)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			e := pgerr.New(pgerr.InvalidName, "replication slot name \"%s\" contains invalid character", name)
			e.Hint = "Replication slot names may only contain lower case letters, numbers, and the underscore character."
			return e
		}
	}
	return nil
}

// loadSlots reads SlotsFile (none: no slots).
func loadSlots(dir *os.Root) (map[string]*Slot, error) {
	slots := map[string]*Slot{}
	data, err := dir.ReadFile(SlotsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return slots, nil
	}
	if err != nil {
		return nil, err
	}
	var list []slotJSON
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, err
	}
	for _, s := range list {
		slots[s.Name] = &Slot{Name: s.Name, RestartLSN: s.RestartLSN, RestartTLI: s.RestartTLI}
	}
	return slots, nil
}

// saveSlotsLocked writes the persistent slots durably; m.mu is held.
func (m *Manager) saveSlotsLocked(run *archiveRun) error {
	list := []slotJSON{}
	for _, s := range run.slots {
		if !s.Temporary {
			list = append(list, slotJSON{Name: s.Name, RestartLSN: s.RestartLSN, RestartTLI: s.RestartTLI})
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	data, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if err := writeDurable(run.dir, SlotsFile, data); err != nil {
		return archiveError("write "+SlotsFile, err)
	}
	run.slotsDirty = false
	run.slotsSaved = time.Now()
	return nil
}

// runningLocked returns the running archive or the error every slot operation
// gives without one; m.mu is held.
func (m *Manager) runningLocked() (*archiveRun, error) {
	if m.cur == nil {
		return nil, notRunning()
	}
	return m.cur, nil
}

// CreateSlot creates one of the archive's physical slots, as
// CREATE_REPLICATION_SLOT ... PHYSICAL does: a temporary one lives until
// ReleaseSlot by pid (its creator holds it from the start, as
// PostgreSQL's does), a persistent one is saved at once. With reserve the
// slot keeps WAL from the archive's durable position.
func (m *Manager) CreateSlot(name string, temporary, reserve bool, pid uint32) (Slot, error) {
	if err := CheckSlotName(name); err != nil {
		return Slot{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	run, err := m.runningLocked()
	if err != nil {
		return Slot{}, err
	}
	if !temporary && run.slotsBroken {
		return Slot{}, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the archive's %s cannot be read, so no persistent slot can be created", SlotsFile)
	}
	if _, ok := run.slots[name]; ok {
		return Slot{}, pgerr.New(pgerr.DuplicateObject, "replication slot \"%s\" already exists", name)
	}
	s := &Slot{Name: name, Temporary: temporary}
	if temporary {
		s.ActivePID = pid
	}
	if reserve {
		// The durable end, as a standby's walsender reserves from its
		// replay position: retention removes whole segments only, so the
		// segment holding it stays.
		s.RestartLSN, s.RestartTLI = m.status.Flushed, m.status.Timeline
	}
	run.slots[name] = s
	if !temporary {
		if err := m.saveSlotsLocked(run); err != nil {
			delete(run.slots, name)
			return Slot{}, err
		}
	}
	return *s, nil
}

// DropSlot drops one of the archive's slots (refused while a connection
// other than pid uses it).
func (m *Manager) DropSlot(name string, pid uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	run, err := m.runningLocked()
	if err != nil {
		return err
	}
	s, ok := run.slots[name]
	if !ok {
		return slotMissing(name)
	}
	if s.ActivePID != 0 && s.ActivePID != pid {
		return slotActive(s)
	}
	delete(run.slots, name)
	if !s.Temporary {
		if err := m.saveSlotsLocked(run); err != nil {
			run.slots[name] = s
			return err
		}
	}
	return nil
}

func slotMissing(name string) error {
	return pgerr.New(pgerr.UndefinedObject, "replication slot \"%s\" does not exist", name)
}

func slotActive(s *Slot) error {
	return pgerr.New(pgerr.ObjectInUse, "replication slot \"%s\" is active for PID %d", s.Name, s.ActivePID)
}

// ReadSlot returns the named slot.
func (m *Manager) ReadSlot(name string) (Slot, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return Slot{}, false
	}
	s, ok := m.cur.slots[name]
	if !ok {
		return Slot{}, false
	}
	return *s, true
}

// AcquireSlot marks the slot used by pid (START_REPLICATION SLOT).
func (m *Manager) AcquireSlot(name string, pid uint32) (Slot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	run, err := m.runningLocked()
	if err != nil {
		return Slot{}, err
	}
	s, ok := run.slots[name]
	if !ok {
		return Slot{}, slotMissing(name)
	}
	if s.ActivePID != 0 && s.ActivePID != pid {
		return Slot{}, slotActive(s)
	}
	s.ActivePID = pid
	return *s, nil
}

// ReleaseSlot ends pid's use of a persistent slot (START_REPLICATION
// ended); a temporary one stays with its connection until ReleaseSlots.
func (m *Manager) ReleaseSlot(name string, pid uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return
	}
	if s, ok := m.cur.slots[name]; ok && s.ActivePID == pid && !s.Temporary {
		s.ActivePID, s.Xmin, s.CatalogXmin = 0, 0, 0
		if m.cur.slotsDirty {
			_ = m.saveSlotsLocked(m.cur)
		}
	}
}

// ReleaseSlots ends pid's use of its slots: temporary ones are dropped,
// as when their connection ends.
func (m *Manager) ReleaseSlots(pid uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	run := m.cur
	if run == nil {
		return
	}
	for name, s := range run.slots {
		if s.ActivePID != pid {
			continue
		}
		s.ActivePID, s.Xmin, s.CatalogXmin = 0, 0, 0
		if s.Temporary {
			delete(run.slots, name)
		}
	}
	if run.slotsDirty {
		_ = m.saveSlotsLocked(run)
	}
}

// AdvanceSlot records the standby's flush position as the slot's
// restart_lsn (never backwards, as PhysicalConfirmReceivedLocation) and
// its hot-standby feedback; persistent slots are saved at most every
// slotSaveInterval.
func (m *Manager) AdvanceSlot(name string, flush uint64, tli uint32, xmin, catalogXmin uint32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	run := m.cur
	if run == nil {
		return
	}
	s, ok := run.slots[name]
	if !ok {
		return
	}
	s.Xmin, s.CatalogXmin = xmin, catalogXmin
	if flush == 0 || flush <= s.RestartLSN {
		return
	}
	s.RestartLSN, s.RestartTLI = flush, tli
	if s.Temporary {
		return
	}
	run.slotsDirty = true
	if time.Since(run.slotsSaved) >= slotSaveInterval {
		if err := m.saveSlotsLocked(run); err != nil {
			m.log.Warn("WAL archive: cannot save the slots", zap.Error(err))
		}
	}
}

// Slots lists the archive's slots by name.
func (m *Manager) Slots() []Slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil
	}
	out := make([]Slot, 0, len(m.cur.slots))
	for _, s := range m.cur.slots {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// slotFloorLocked is the oldest restart_lsn of the archive's slots (0:
// none reserves WAL); retention keeps everything from there. m.mu is
// held.
func (m *Manager) slotFloorLocked() uint64 {
	var floor uint64
	if m.cur == nil {
		return 0
	}
	for _, s := range m.cur.slots {
		if s.RestartLSN != 0 && (floor == 0 || s.RestartLSN < floor) {
			floor = s.RestartLSN
		}
	}
	return floor
}
