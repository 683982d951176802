package walarchive

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pgverbs/pgverbs/walstream"
)

// Protect is what retention must keep whatever RETENTION and MAX_SIZE say.
type Protect struct {
	// SlotRestart is the upstream slot's restart_lsn, BackupStart the
	// start LSN of the newest base backup older than the retention window
	// (NewestBefore); 0 when unknown or none.
	SlotRestart, BackupStart uint64
	// NotUploaded, for an archive uploading to object storage, is the
	// start LSN of the oldest complete segment whose upload is not
	// confirmed (at least 1, so that segment 0 is protected too); 0 when
	// every one is uploaded or the archive uploads nowhere. The local
	// copy is the only one until then.
	NotUploaded uint64
}

// KeepFrom is the LSN from which every segment is kept: the smallest of
// the known positions, 0 when none is known (then none protects
// anything).
func (p Protect) KeepFrom() uint64 {
	var keep uint64
	for _, lsn := range []uint64{p.SlotRestart, p.BackupStart, p.NotUploaded} {
		if lsn != 0 && (keep == 0 || lsn < keep) {
			keep = lsn
		}
	}
	return keep
}

// PlanRemoval returns the names of the files retention deletes, oldest
// first: segments completed before now-retention (retention 0: none by
// age), and beyond that the oldest ones until the files' bytes are at most
// maxSize (0: no bound).
//
// It only ever removes a run of the oldest complete segments (NAME or
// NAME.zst), stopping at the first it must keep, so that no gap opens
// inside the archive. Kept whatever the settings: history files, .partial
// segments (the one being written, and the ends of past timelines), the
// newest complete segment, every segment ending after p.KeepFrom(), and a
// segment whose completion time is unknown (for the age limit). The
// archive may therefore stay above maxSize: MAX_SIZE never deletes WAL a
// backup or the slot still needs.
func PlanRemoval(files []SegmentInfo, p Protect, now time.Time, retention time.Duration, maxSize int64) []string {
	if retention <= 0 && maxSize <= 0 {
		return nil
	}
	var total int64
	var segs []SegmentInfo
	for _, f := range files {
		total += f.Bytes
		if f.State == SegComplete || f.State == SegCompressed {
			segs = append(segs, f)
		}
	}
	sort.SliceStable(segs, func(i, j int) bool {
		if segs[i].Start != segs[j].Start {
			return segs[i].Start < segs[j].Start
		}
		return segs[i].Timeline < segs[j].Timeline
	})
	keepFrom := p.KeepFrom()
	cutoff := now.Add(-retention)
	var out []string
	for i := 0; i < len(segs); {
		// One segment may be there twice, NAME and NAME.zst (a
		// compression between its rename and its removal of NAME): both
		// go or both stay, and it completed when the first did.
		j, done := i+1, segs[i].CompletedAt
		for j < len(segs) && segs[j].Start == segs[i].Start && segs[j].Timeline == segs[i].Timeline {
			if at := segs[j].CompletedAt; done.IsZero() || (!at.IsZero() && at.Before(done)) {
				done = at
			}
			j++
		}
		if j == len(segs) || (keepFrom != 0 && segs[i].End > keepFrom) {
			break // the newest complete segment, or protected
		}
		old := retention > 0 && !done.IsZero() && done.Before(cutoff)
		big := maxSize > 0 && total > maxSize
		if !old && !big {
			break
		}
		for _, f := range segs[i:j] {
			out = append(out, f.Name)
			total -= f.Bytes
		}
		i = j
	}
	return out
}

// BackupStart is where a base backup under the backup root began.
type BackupStart struct {
	// Dir is the backup's directory, relative to the root (slashes).
	Dir string
	// Start is the backup's start LSN (the WAL it needs begins there), on
	// timeline Timeline; Time is when it started.
	Start    uint64
	Timeline uint32
	Time     time.Time
	// SystemID is the backed-up cluster's system identifier, read from
	// global/pg_control of a plain backup; 0 for a tar backup. Backups of
	// other clusters in the same root are not the archive's to protect.
	SystemID uint64
}

// backupMarker is the file BASE BACKUP keeps in a backup's directory while
// it runs (backup.markerName).
const backupMarker = ".pgverbs-backup-in-progress"

// BackupStarts finds the base backups under root: every directory holding
// backup_manifest or backup_label (a plain backup holds both, a tar backup
// keeps backup_manifest beside base.tar, a backup without a manifest
// backup_label; a tar backup without a manifest is not found), not
// descending into a backup's own data directory. A backup still being
// written (its .pgverbs-backup-in-progress marker) is left out: it may
// fail, and protecting WAL for it could let that of an older, finished one
// go. WAL archive directories are not searched. Symbolic links below root
// are not followed.
//
// The start LSN and timeline are backup_label's START WAL LOCATION and
// START TIMELINE, else the manifest's earliest WAL-Ranges Start-LSN; the
// start time is backup_label's START TIME, else (a tar backup, or a zone
// abbreviation that names no known offset) the manifest's Last-Modified of
// backup_label, which the server sets when it writes the label, else the
// modification time of the file read. A later time errs on the safe side:
// NewestBefore then picks an older backup, whose WAL is kept longer.
//
// A directory that has the files but whose start cannot be read is an
// error: retention must not guess.
func BackupStarts(root string) ([]BackupStart, error) {
	// The root itself may be a link (WalkDir would not enter it); the
	// links below it are not followed.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("walarchive: the backup root: %w", err)
	}
	var out []BackupStart
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		has := func(name string) bool {
			fi, err := os.Lstat(filepath.Join(path, name))
			return err == nil && fi.Mode().IsRegular()
		}
		switch {
		case has(backupMarker), has(StateFile):
			return filepath.SkipDir
		case !has("backup_manifest") && !has("backup_label"):
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		b, err := readBackupStart(path)
		if err != nil {
			return fmt.Errorf("walarchive: backup %s: %w", filepath.ToSlash(rel), err)
		}
		b.Dir = filepath.ToSlash(rel)
		out = append(out, b)
		return filepath.SkipDir
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readBackupStart reads the start of the backup in dir.
func readBackupStart(dir string) (BackupStart, error) {
	var b BackupStart
	var label backupLabel
	labelFile := filepath.Join(dir, "backup_label")
	switch err := readLabel(labelFile, &label); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return b, err
	}
	var man manifestStart
	manFile := filepath.Join(dir, "backup_manifest")
	switch err := readManifest(manFile, &man); {
	case errors.Is(err, fs.ErrNotExist):
		if !label.found {
			return b, errors.New("neither backup_label nor backup_manifest can be read")
		}
	case err != nil:
		return b, err
	}
	switch {
	case label.hasStart:
		b.Start, b.Timeline = label.start, label.tli
	case man.found:
		b.Start, b.Timeline = man.start, man.tli
	default:
		return b, errors.New("backup_label has no START WAL LOCATION and START TIMELINE")
	}
	switch {
	case label.hasTime:
		b.Time = label.time
	case !man.labelTime.IsZero():
		b.Time = man.labelTime
	case label.found:
		b.Time = label.mtime
	default:
		b.Time = man.mtime
	}
	if id, err := readSystemID(filepath.Join(dir, "global", "pg_control")); err == nil {
		b.SystemID = id
	}
	return b, nil
}

// backupLabel is what readLabel found in a backup_label.
type backupLabel struct {
	found             bool
	hasStart, hasTime bool
	start             uint64
	tli               uint32
	time              time.Time
	mtime             time.Time
}

// readLabel reads backup_label (lines "KEY: value", as do_pg_backup_start
// writes them). A START TIME whose zone abbreviation names no offset Go
// knows leaves hasTime false: the manifest's time is exact.
func readLabel(path string, l *backupLabel) error {
	f, mtime, err := openStat(path)
	if err != nil {
		return err
	}
	defer f.Close()
	l.mtime = mtime
	l.found = true
	var hasLSN, hasTLI bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		switch key {
		case "START WAL LOCATION":
			lsn, _, _ := strings.Cut(val, " ")
			var err error
			l.start, err = walstream.ParseLSN(lsn)
			hasLSN = err == nil
		case "START TIMELINE":
			tli, err := strconv.ParseUint(val, 10, 32)
			l.tli, hasTLI = uint32(tli), err == nil && tli != 0
		case "START TIME":
			l.time, l.hasTime = parseLabelTime(val)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	l.hasStart = hasLSN && hasTLI
	return nil
}

// parseLabelTime parses START TIME ("%Y-%m-%d %H:%M:%S %Z" in the server's
// log_timezone): numeric zones ("+03", "-0330") and UTC/GMT are exact, as
// is an abbreviation of the local zone; any other abbreviation is refused.
func parseLabelTime(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02 15:04:05 -07", "2006-01-02 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	t, err := time.Parse("2006-01-02 15:04:05 MST", s)
	if err != nil {
		return time.Time{}, false
	}
	// Parse gives an abbreviation the local zone does not use a made-up
	// zone at offset 0.
	zone, _ := t.Zone()
	return t, t.Location() == time.UTC || t.Location() == time.Local || zone == "GMT"
}

// manifestStart is what readManifest found in a backup_manifest.
type manifestStart struct {
	found     bool
	start     uint64
	tli       uint32
	labelTime time.Time // Last-Modified of backup_label
	mtime     time.Time
}

// readManifest reads a backup manifest's WAL ranges and the entry of
// backup_label.
func readManifest(path string, m *manifestStart) error {
	f, mtime, err := openStat(path)
	if err != nil {
		return err
	}
	defer f.Close()
	m.mtime = mtime
	var doc struct {
		Files []struct {
			Path         string `json:"Path"`
			LastModified string `json:"Last-Modified"`
		} `json:"Files"`
		Ranges []struct {
			Timeline uint32 `json:"Timeline"`
			Start    string `json:"Start-LSN"`
		} `json:"WAL-Ranges"`
	}
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&doc); err != nil {
		return fmt.Errorf("backup_manifest: %w", err)
	}
	for _, r := range doc.Ranges {
		lsn, err := walstream.ParseLSN(r.Start)
		ok := err == nil
		if !ok || r.Timeline == 0 {
			return fmt.Errorf("backup_manifest: invalid WAL range %q on timeline %d", r.Start, r.Timeline)
		}
		if !m.found || lsn < m.start {
			m.found, m.start, m.tli = true, lsn, r.Timeline
		}
	}
	if !m.found {
		return errors.New("backup_manifest has no WAL-Ranges")
	}
	for _, e := range doc.Files {
		if e.Path == "backup_label" {
			if t, err := time.Parse("2006-01-02 15:04:05 GMT", e.LastModified); err == nil {
				m.labelTime = t
			}
		}
	}
	return nil
}

// openStat opens path and returns its modification time too.
func openStat(path string) (*os.File, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, time.Time{}, err
	}
	return f, fi.ModTime(), nil
}

// readSystemID reads the system identifier, pg_control's first field.
func readSystemID(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// NewestBefore returns the backup that started last before t (the start
// of the retention window), false when none did.
func NewestBefore(starts []BackupStart, t time.Time) (BackupStart, bool) {
	var best BackupStart
	found := false
	for _, b := range starts {
		if !b.Time.Before(t) {
			continue
		}
		// Of two that started at once, the one that needs more WAL.
		if !found || b.Time.After(best.Time) || (b.Time.Equal(best.Time) && b.Start < best.Start) {
			best, found = b, true
		}
	}
	return best, found
}
