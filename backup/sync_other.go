//go:build !linux

package backup

import (
	"io/fs"
)

// syncTarget fsyncs every file and directory of the backup.
func syncTarget(t *targetDir) error {
	return fs.WalkDir(t.dir.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return fileError("sync", name, err)
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		f, err := t.dir.Open(name)
		if err != nil {
			return fileError("sync", name, err)
		}
		defer f.Close()
		if err := f.Sync(); err != nil && d.Type().IsRegular() {
			return fileError("sync", name, err)
		}
		return nil
	})
}
