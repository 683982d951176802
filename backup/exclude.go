package backup

import (
	"path"
	"regexp"
	"strings"
)

// What PostgreSQL's base backup leaves out (excludeDirContents,
// excludeFiles and the checks of sendDir in basebackup.c). The server
// applies these itself for the replication method; the SQL method walks
// the data directory with SQL functions and must apply them here, or a
// restored backup would start with a stale postmaster.pid, replication
// slots or temporary relations. Keep the lists in step with the server
// versions the SQL method supports.
var (
	// excludeDirContents are directories copied empty, at any depth.
	excludeDirContents = map[string]bool{
		"pg_stat_tmp": true, "pg_replslot": true, "pg_dynshmem": true, "pg_notify": true,
		"pg_serial": true, "pg_snapshots": true, "pg_subtrans": true,
	}
	// excludeFiles are file names left out, at any depth.
	excludeFiles = map[string]bool{
		"postgresql.auto.conf.tmp": true, "current_logfiles.tmp": true,
		"backup_label": true, "tablespace_map": true, "backup_manifest": true,
		"postmaster.pid": true, "postmaster.opts": true,
	}
	// relFileName matches relation files: OID, fork, segment.
	relFileName = regexp.MustCompile(`^([0-9]+)(_(fsm|vm|init))?(\.[0-9]+)?$`)
	// tempRelFileName matches files of temporary relations.
	tempRelFileName = regexp.MustCompile(`^t[0-9]+_[0-9]+(_(fsm|vm|init))?(\.[0-9]+)?$`)
)

// excluded reports whether a backup leaves out the directory entry name
// (file or directory) of directory dir whatever it is: temporary files and
// the excludeFiles list, and, in database directories, temporary relations
// and the non-init forks of unlogged relations (which have an _init fork
// among siblings).
func excluded(name string, dbDir bool, siblings map[string]bool) bool {
	if strings.HasPrefix(name, "pgsql_tmp") || excludeFiles[name] || strings.HasPrefix(name, "pg_internal.init") {
		return true
	}
	if !dbDir {
		return false
	}
	if m := relFileName.FindStringSubmatch(name); m != nil && m[3] != "init" && siblings[m[1]+"_init"] {
		return true
	}
	return tempRelFileName.MatchString(name)
}

// isDBDir reports whether dir (slash-separated, relative to the data
// directory or a tablespace) holds relations: base/OID, or VERSIONDIR/OID
// in a tablespace.
func isDBDir(dir, versionDir string) bool {
	parent, last := path.Split(dir)
	if last == "" || strings.Trim(last, "0123456789") != "" {
		return false
	}
	parent = strings.TrimSuffix(parent, "/")
	return parent == "base" || path.Base(parent) == versionDir
}

// isSocket reports whether a file that is no directory is a Unix socket
// (unix_socket_directories pointing into the data directory): the server
// skips such special files, and pg_read_binary_file cannot read them.
// Their .lock files are regular files and are copied.
func isSocket(name string) bool {
	return strings.HasPrefix(name, ".s.PGSQL.") && !strings.HasSuffix(name, ".lock")
}
