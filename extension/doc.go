// Package extension is the logic behind INSTALL EXTENSION and UNINSTALL
// EXTENSION: reading extension packages from the extensions directory,
// deciding what an install must do, and turning package scripts into
// statements. It never talks to a database; the proxy runs the statements
// over the client's own session, inside one transaction, and records what
// it installed in pgverbs.extensions.
//
// The design is the one proposed for PostgreSQL 9.1 at PGCon 2010, before
// core PostgreSQL chose per-version script files instead: one directory per
// package, one version per directory, dependencies with version
// constraints, and conflicts.
//
// # Package layout
//
// Each package is a directory of the extensions directory, named after the
// package (see ValidName):
//
//	foo/control        metadata, required
//	foo/install.sql    run by INSTALL EXTENSION, required
//	foo/uninstall.sql  run by UNINSTALL EXTENSION, optional
//	foo/foo.conf       settings, optional
//
// A control file:
//
//	# comment
//	name = foo
//	version = 1.0
//	comment = 'what it does'
//	depends  = bar (>= 1.1), baz
//	conflicts = bla (< 0.8)
//	custom_variable_classes = 'foo'
//
// Control and settings files use postgresql.conf's syntax: "#" comments,
// "key = value" with the "=" optional, values bare or single-quoted (a
// doubled quote character, or \', stands for one). Bare values run to the end of the line or comment,
// so a depends list needs no quotes. See ParseControl and ParseSettings.
//
// depends and conflicts list packages, each optionally with constraints
// that all must hold: "bar (>= 1.1, < 2.0)", with operators =, !=, <, <=,
// > and >=. Versions compare with CompareVersions, which orders 1.9 before
// 1.10 and pre-releases (1.0-rc1, 1.0beta) before their release.
//
// # Flow of an INSTALL EXTENSION
//
//  1. Resolve(repo, name, version, installed, cascade) checks everything
//     that needs no database: the package exists, the version, each
//     dependency installed at a satisfying version (or, with CASCADE,
//     installable), no cycle, no conflict either way. It returns the
//     packages to install, dependencies first.
//  2. For each step, Repo.Script reads install.sql and PrepareScript strips
//     \echo lines, substitutes @extschema@, parses the script with
//     PostgreSQL's parser and refuses statements that cannot run inside a
//     transaction, so a script is rejected before any of it runs.
//  3. The proxy runs the statements in order, stopping at the first error.
//
// UNINSTALL EXTENSION uses DependentsOf to refuse (RESTRICT) or to remove
// dependents first (CASCADE).
//
// # Security
//
// Package names reach the file system from SQL, where quoting allows any
// character, so ValidName allows only letters, digits, "_", "-" and ".",
// without a leading "." or "..". Repo never reads outside its directory:
// every path is resolved with filepath.EvalSymlinks and compared with the
// resolved repository directory (filepath.Rel), then opened through
// os.Root, which also holds if a symbolic link changes between the check
// and the open. Only regular files are read, with size limits. Messages
// name files relative to the repository, never by absolute path, because
// clients see them. The schema substituted for @extschema@ may not contain
// quote characters (CVE-2023-39417).
//
// # Errors
//
// Every error meant for the client is a *pgerr.Error (errors.As) with the
// SQLSTATE PostgreSQL uses for the same situation, or the nearest one;
// some also wrap a sentinel (errors.Is): ErrNotFound, ErrOutsideRepo,
// ErrAlreadyInstalled.
//
//	42601 syntax_error                      control or settings file syntax, unknown key; script syntax
//	22023 invalid_parameter_value           invalid name; bad control value; VERSION not available;
//	                                        dependency version unsatisfied; schema with quote characters
//	22021 character_not_in_repertoire       file not UTF-8, or holding NUL
//	42704 undefined_object                  package not available; required extension not installed
//	42710 duplicate_object                  extension already installed
//	42P17 invalid_object_definition         dependency cycle
//	55000 object_not_in_prerequisite_state  conflict
//	0A000 feature_not_supported             statement not allowed in a script
//	42501 insufficient_privilege            path outside the extensions directory; file not readable
//	58P01 undefined_file                    missing install.sql or uninstall.sql
//	58030 io_error                          other file errors, non-regular files
//	54000 program_limit_exceeded            file too large
package extension
