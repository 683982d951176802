package backup

import (
	"io/fs"
	"os"
	"path/filepath"
)

// syncTarget makes the backup durable the way PostgreSQL's fsync_pgdata
// does for pg_basebackup: a first pass asks the kernel to start writing
// every file (startWriteback), a second fsyncs each file and directory,
// then the directories from the target up to the backup root, whose
// entries Run may have created. Per-file fsync, unlike one syncfs(2),
// does not wait for other writers' dirty data on the same file system
// (a database on the backup root's disk). On this project's test machine,
// for a 1 GB plain backup: 0.52-0.56 s against syncfs's 0.45 s (0.8 s in
// first rounds); four fsyncs at a time gained nothing.
func syncTarget(t *targetDir) error {
	walk := func(fn func(name string, f *os.File, regular bool) error) error {
		return fs.WalkDir(t.dir.FS(), ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return fileError("sync", name, err)
			}
			if !d.Type().IsRegular() && !d.IsDir() {
				return nil // the tablespace links: what they point to is synced on its own
			}
			f, err := t.dir.Open(name)
			if err != nil {
				return fileError("sync", name, err)
			}
			defer f.Close()
			return fn(name, f, d.Type().IsRegular())
		})
	}
	if err := walk(func(_ string, f *os.File, regular bool) error {
		if regular {
			startWriteback(f)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := walk(func(name string, f *os.File, regular bool) error {
		if err := f.Sync(); err != nil && regular {
			return fileError("sync", name, err)
		}
		return nil
	}); err != nil {
		return err
	}
	for dir := filepath.Dir(t.r.rel); ; dir = filepath.Dir(dir) {
		if f, err := t.root.Open(dir); err == nil {
			_ = f.Sync() // some file systems refuse to fsync directories
			f.Close()
		}
		if dir == "." {
			return nil
		}
	}
}
