package extension

import (
	"regexp"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// libraryRef matches the references to a shared library that PostgreSQL
// expands: MODULE_PATHNAME (replaced by module_pathname) and $libdir (the
// server's library directory, in AS 'obj_file' and LOAD).
var libraryRef = regexp.MustCompile(`MODULE_PATHNAME|\$libdir`)

// languageC is the fallback for scripts the parser cannot read: LANGUAGE C
// written bare, 'quoted' or "quoted", in any letter case.
var languageC = regexp.MustCompile(`(?i)\blanguage\s+(?:c|'c'|"c")(?:[^a-z0-9_$]|$)`)

// languageCLower is languageC for lower-cased text: with a literal prefix
// the matcher skips ahead quickly, where the case-insensitive form walks
// every byte.
var languageCLower = regexp.MustCompile(`\blanguage\s+(?:c|'c'|"c")(?:[^a-z0-9_$]|$)`)

// placeholdersForParse are PrepareScriptOpts's placeholders that are not
// valid SQL where they stand: NeedsLibrary replaces them with an identifier
// before parsing.
var placeholdersForParse = regexp.MustCompile(`@extschema@|@extowner@|@extschema:[^@\s]+@`)

// NeedsLibrary reports whether an extension script needs a shared library
// on the database server: whether it references MODULE_PATHNAME or $libdir
// outside comments, or defines a function or procedure in LANGUAGE C
// (checked on the CREATE FUNCTION options of PostgreSQL's parse tree; when
// the script does not parse, a case-insensitive match of LANGUAGE C on the
// text stands in).
//
// pgverbs runs scripts over a client session and cannot install files on
// the server, so such a script only works when the library is installed
// there already. A package needs one when any script on its install path
// does (Repo.NeedsLibrary). A module_pathname key in the control file alone
// does not count: pgTAP's control file sets module_pathname =
// '$libdir/pgtap', yet its scripts are pure SQL and PL/pgSQL and never use
// MODULE_PATHNAME. Only what the scripts do decides.
func NeedsLibrary(script string) bool {
	text := stripEcho(script)
	// Plain text searches first: scanning and parsing a script as large as
	// pgTAP's costs more CPU than PostgreSQL spends installing it, and only
	// a script that mentions a library or LANGUAGE C somewhere (even in a
	// comment) needs them.
	mentionsLibrary := strings.Contains(text, "MODULE_PATHNAME") || strings.Contains(text, "$libdir")
	if !mentionsLibrary && !languageCLower.MatchString(strings.ToLower(text)) {
		return false
	}
	if !mentionsLibrary {
		// Skip the scan.
	} else if res, err := pg_query.Scan(text); err == nil {
		for _, tok := range res.GetTokens() {
			if tok.Token == pg_query.Token_SQL_COMMENT || tok.Token == pg_query.Token_C_COMMENT {
				continue
			}
			start, end := int(tok.Start), int(tok.End)
			if 0 <= start && start <= end && end <= len(text) && libraryRef.MatchString(text[start:end]) {
				return true
			}
		}
	} else if libraryRef.MatchString(text) {
		return true
	}
	tree, err := pg_query.Parse(placeholdersForParse.ReplaceAllString(text, "x"))
	if err != nil {
		return languageC.MatchString(text)
	}
	for _, raw := range tree.GetStmts() {
		fn := raw.GetStmt().GetCreateFunctionStmt()
		if fn == nil {
			continue
		}
		for _, o := range fn.GetOptions() {
			d := o.GetDefElem()
			if d.GetDefname() == "language" && strings.EqualFold(d.GetArg().GetString_().GetSval(), "c") {
				return true
			}
		}
	}
	return false
}

// NeedsLibrary reports whether installing version of p ("" for p.Version)
// runs a script that needs a shared library on the server: NeedsLibrary of
// every script of InstallPath. Errors are those of InstallPath and
// ReadScript.
func (r *Repo) NeedsLibrary(p *Package, version string) (bool, error) {
	files, err := r.InstallPath(p, version)
	if err != nil {
		return false, err
	}
	for _, f := range files {
		text, err := r.ReadScript(p, f)
		if err != nil {
			return false, err
		}
		if NeedsLibrary(text) {
			return true, nil
		}
	}
	return false, nil
}
