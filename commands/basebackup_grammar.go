package commands

import (
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// BaseBackupStmt is a parsed BASE BACKUP statement:
//
//	BASE BACKUP TO 'path' [WITH (option [, ...])]
//
// Options are FORMAT plain|tar, COMPRESSION none|gzip|lz4|zstd [LEVEL n],
// WAL stream|fetch|none, CHECKPOINT fast|spread, MANIFEST on|off,
// MANIFEST_CHECKSUMS name, MAX_RATE 'rate', LABEL 'text',
// VERIFY_CHECKSUMS on|off, METHOD replication|sql, TABLESPACE_MAP
// 'olddir=newdir' (the only option that may be repeated, one per
// tablespace, as pg_basebackup's --tablespace-mapping), STANDBY on|off
// and STANDBY_HOST 'host'.
type BaseBackupStmt struct {
	Path string
	// Options holds each given option, name and value lower-cased except
	// for LABEL, MAX_RATE and STANDBY_HOST, which keep their case.
	Options map[string]string
	// Level is the COMPRESSION ... LEVEL n, 0 when not given.
	Level int
	// TablespaceMap holds the TABLESPACE_MAP values in order, as given.
	TablespaceMap []string
}

// backupOptions are the option names and the values each accepts (nil:
// any single value).
var backupOptions = map[string][]string{
	"format":             {"plain", "tar"},
	"compression":        {"none", "gzip", "lz4", "zstd"},
	"wal":                {"stream", "fetch", "none"},
	"checkpoint":         {"fast", "spread"},
	"manifest":           {"on", "off", "true", "false", "yes", "no"},
	"manifest_checksums": {"none", "crc32c", "sha224", "sha256", "sha384", "sha512"},
	"max_rate":           nil,
	"label":              nil,
	"verify_checksums":   {"on", "off", "true", "false", "yes", "no"},
	"method":             {"replication", "sql"},
	"tablespace_map":     nil,
	"standby":            {"on", "off", "true", "false", "yes", "no"},
	"standby_host":       nil,
}

// ParseBaseBackup parses one BASE BACKUP statement. Errors are
// *pgerr.Error: 42601 for syntax, with the position, and 22023 for an
// unknown option or value.
func ParseBaseBackup(sql string) (*BaseBackupStmt, error) {
	return parse(sql, func(p *parser) (*BaseBackupStmt, error) {
		for _, w := range []string{"base", "backup"} {
			t := p.peek(0)
			if t == nil || t.Token != pg_query.Token_IDENT || asciiLower(p.text(t)) != w {
				return nil, p.syntaxError(t)
			}
			p.pos++
		}
		if err := p.expect(pg_query.Token_TO); err != nil {
			return nil, err
		}
		t := p.peek(0)
		if t == nil || t.Token != pg_query.Token_SCONST || p.text(t)[0] != '\'' {
			return nil, p.syntaxError(t)
		}
		st := &BaseBackupStmt{Path: unquoteString(p.text(t)), Options: map[string]string{}}
		p.pos++
		if p.peekIs(0, pg_query.Token_WITH) {
			p.pos++
			if err := p.expect(pg_query.Token_ASCII_40); err != nil { // '('
				return nil, err
			}
			for {
				if err := p.backupOption(st); err != nil {
					return nil, err
				}
				if !p.peekIs(0, pg_query.Token_ASCII_44) { // ','
					break
				}
				p.pos++
			}
			if err := p.expect(pg_query.Token_ASCII_41); err != nil { // ')'
				return nil, err
			}
		}
		return st, p.finish()
	})
}

// backupOption parses one "name value" pair.
func (p *parser) backupOption(st *BaseBackupStmt) error {
	nameTok := p.peek(0)
	if nameTok == nil || nameTok.Token == pg_query.Token_SCONST || nameTok.Token == pg_query.Token_ASCII_41 {
		return p.syntaxError(nameTok)
	}
	name := asciiLower(p.text(nameTok))
	p.pos++
	allowed, known := backupOptions[name]
	if !known {
		e := pgerr.New(pgerr.InvalidParameterValue, "unrecognized BASE BACKUP option %q", name)
		e.Position = PositionAt(p.sql, int(nameTok.Start))
		return e
	}
	if name == "tablespace_map" {
		t := p.peek(0)
		if t == nil || t.Token != pg_query.Token_SCONST || p.text(t)[0] != '\'' {
			return p.syntaxError(t)
		}
		st.TablespaceMap = append(st.TablespaceMap, unquoteString(p.text(t)))
		p.pos++
		return nil
	}
	if _, dup := st.Options[name]; dup {
		e := pgerr.New(pgerr.SyntaxError, "conflicting or redundant options")
		e.Position = PositionAt(p.sql, int(nameTok.Start))
		return e
	}
	valTok := p.peek(0)
	if valTok == nil {
		return p.syntaxError(nil)
	}
	var val string
	switch valTok.Token {
	case pg_query.Token_SCONST:
		if p.text(valTok)[0] != '\'' {
			return p.syntaxError(valTok)
		}
		val = unquoteString(p.text(valTok))
	case pg_query.Token_ASCII_44, pg_query.Token_ASCII_41:
		return p.syntaxError(valTok)
	default:
		val = p.text(valTok)
	}
	p.pos++
	if name != "label" && name != "max_rate" && name != "standby_host" {
		val = asciiLower(val)
	}
	if allowed != nil && !contains(allowed, val) {
		e := pgerr.New(pgerr.InvalidParameterValue, "invalid value %q for BASE BACKUP option %q", val, strings.ToUpper(name))
		e.Hint = "Valid values are: " + strings.Join(allowed, ", ") + "."
		e.Position = PositionAt(p.sql, int(valTok.Start))
		return e
	}
	st.Options[name] = val
	if name == "compression" && p.peek(0) != nil && asciiLower(p.text(p.peek(0))) == "level" {
		p.pos++
		lt := p.peek(0)
		if lt == nil || lt.Token != pg_query.Token_ICONST {
			return p.syntaxError(lt)
		}
		n, err := strconv.Atoi(p.text(lt))
		if err != nil {
			return p.syntaxError(lt)
		}
		st.Level = n
		p.pos++
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
