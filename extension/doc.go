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
// constraints, and conflicts. PostgreSQL's own layout is read too, side by
// side, so that packaged extensions (Debian's postgresql-NN-* packages,
// PGXN's make install) can be dropped in as they are.
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
// so a depends list needs no quotes. See parseControl (control.go) and ParseSettings.
//
// depends and conflicts list packages, each optionally with constraints
// that all must hold: "bar (>= 1.1, < 2.0)", with operators =, !=, <, <=,
// > and >=. Versions compare with CompareVersions, which orders 1.9 before
// 1.10 and pre-releases (1.0-rc1, 1.0beta) before their release.
//
// # PostgreSQL's layout
//
// The same directory may hold extensions as PostgreSQL's SHAREDIR/extension
// does (Package.Layout is LayoutNative):
//
//	foo.control            primary control file, required (parseNativeControl, native.go)
//	foo--1.0.sql           install script of version 1.0
//	foo--1.0--1.1.sql      update script from 1.0 to 1.1
//	foo--1.1.control       secondary control file of version 1.1, optional
//	uninstall_foo.sql      run by UNINSTALL EXTENSION, optional (contrib's
//	                       pre-9.1 convention; PostgreSQL itself has none)
//
// The scripts and secondary control files are in the control file's
// directory (relative to the extensions directory, and kept inside it) or
// in the extensions directory itself. The control keys are PostgreSQL 16's:
// default_version, comment, requires (names only: no version constraints),
// schema, relocatable, superuser, trusted, encoding, directory,
// module_pathname and no_relocate; a secondary control file may override
// any but directory and default_version. A name with both foo/control and
// foo.control is an error naming both.
//
// Versions are what the script names say (Package.Versions: those with an
// install script, or reachable from one through update scripts).
// Repo.InstallPath gives the scripts that install a version: its own
// install script, or since PostgreSQL 10 another version's followed by
// update scripts; Repo.UpdatePath those that take an installed version to
// another, as ALTER EXTENSION UPDATE; Repo.UpdatePaths the whole matrix,
// as pg_extension_update_paths(). Paths have the fewest update steps, and
// ties are broken exactly as PostgreSQL breaks them (an install starts from
// the version whose name sorts last byte-wise; along a path, a version's
// predecessor is the one whose name sorts first), so that pgverbs runs the
// same scripts as CREATE EXTENSION would. PostgreSQL calls that tie-break
// undocumented; it is followed here because the alternative, a different
// chain for the same files, would give different objects.
//
// Each script runs with the control file of the version it installs
// (ScriptFile.To; Repo.LoadVersion), whose module_pathname replaces
// MODULE_PATHNAME (PrepareScriptOpts). NeedsLibrary tells whether a script
// needs a shared library on the server, which pgverbs cannot install: a
// script that references MODULE_PATHNAME or $libdir, or defines a LANGUAGE C
// function. A module_pathname in the control file alone does not count:
// pgTAP sets one and is pure SQL.
//
// # Flow of an INSTALL EXTENSION
//
//  1. ResolveEnv(repo, name, version, env, cascade) checks everything that
//     needs no database: the package exists, the version, each dependency
//     installed at a satisfying version (by pgverbs or on the server) or,
//     with CASCADE, installable from the repository or by the server's
//     CREATE EXTENSION, no cycle, no conflict either way. It returns the
//     steps, dependencies first, each package step with its scripts
//     (Repo.InstallPath). Resolve is the same without server extensions.
//  2. For each package step, Repo.ReadScript reads each script and
//     PrepareScriptOpts strips \echo lines, substitutes @extschema@,
//     @extschema:name@, @extowner@ and MODULE_PATHNAME, parses the script
//     with PostgreSQL's parser and refuses statements that cannot run
//     inside a transaction, so a script is rejected before any of it runs.
//  3. The proxy runs the statements in order, stopping at the first error.
//
// UNINSTALL EXTENSION asks PlanUninstall what to remove and in which order,
// or whether dependents refuse it (RESTRICT); an update, by INSTALL ...
// VERSION or ALTER EXTENSION ... UPDATE, asks CheckUpdate whether the new
// version may be had.
//
// # Security
//
// Package names reach the file system from SQL, where quoting allows any
// character, so ValidName allows only letters, digits, "_", "-" and ".",
// without a leading "." or "..". Repo never reads outside its directory:
// every path is resolved with filepath.EvalSymlinks and compared with the
// resolved repository directory (filepath.Rel), then opened through
// os.Root, which also holds if a symbolic link changes between the check
// and the open; a native control file's directory key is held to the same
// rule, and Repo.ReadScript reads only the package's own scripts, whatever
// name it is given. Only regular files are read, with size limits. Messages
// name files relative to the repository, never by absolute path, because
// clients see them. The schema substituted for @extschema@, and the values
// for @extschema:name@ and @extowner@, may not contain quote characters
// (CVE-2023-39417).
//
// # Errors
//
// Every error meant for the client is a *pgerr.Error (errors.As) with the
// SQLSTATE PostgreSQL uses for the same situation, or the nearest one;
// some also wrap a sentinel (errors.Is): ErrNotFound, ErrOutsideRepo,
// ErrAlreadyInstalled.
//
//	42601 syntax_error                      control or settings file syntax, unknown key, key not allowed
//	                                        in a secondary control file; script syntax
//	22023 invalid_parameter_value           invalid name; bad control value; VERSION not available;
//	                                        no update path; dependency version unsatisfied;
//	                                        schema or owner with quote characters
//	22021 character_not_in_repertoire       file not UTF-8, or holding NUL
//	42704 undefined_object                  package not available; required extension not installed
//	42710 duplicate_object                  extension already installed
//	42P17 invalid_object_definition         dependency cycle; a name defined in both layouts
//	55000 object_not_in_prerequisite_state  conflict
//	0A000 feature_not_supported             statement not allowed in a script; script encoding
//	                                        that cannot be converted
//	42501 insufficient_privilege            path (or directory key) outside the extensions directory;
//	                                        file not readable
//	58P01 undefined_file                    missing install.sql, uninstall.sql, script or directory
//	58030 io_error                          other file errors, non-regular files
//	54000 program_limit_exceeded            file too large
//	XX000 internal_error                    misuse: Script of another kind of script, ReadScript of a
//	                                        file that is not one of the package's scripts
package extension
