package walsender

import (
	"strconv"
	"strings"

	"github.com/pgverbs/pgverbs/walstream"
)

// kind names the replication commands pgverbs answers itself.
type kind int

const (
	cmdIdentifySystem kind = iota + 1
	cmdTimelineHistory
	cmdShow
	cmdReadSlot
	cmdCreateSlot
	cmdDropSlot
	cmdStart
)

// command is one parsed replication command.
type command struct {
	kind kind
	// name is the slot (or the SHOW variable, lower-cased).
	name      string
	temporary bool
	reserve   bool
	lsn       uint64
	timeline  uint32
	wait      bool
}

// token is one lexeme of the replication grammar (repl_scanner.l):
// an identifier (down-cased unless quoted), a number, an LSN, a string or
// punctuation.
type token struct {
	text   string
	quoted bool // a "quoted identifier" or a 'string'
	kind   byte // 'i' identifier/keyword, 'n' number, 'l' LSN, 's' string, or the punctuation byte
}

// lex splits a replication command as PostgreSQL's replication scanner
// does; ok is false for text it would refuse.
func lex(sql string) (toks []token, ok bool) {
	s := sql
	for len(s) > 0 {
		c := s[0]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			s = s[1:]
		case c == '(' || c == ')' || c == ',' || c == ';' || c == '.':
			toks = append(toks, token{text: s[:1], kind: c})
			s = s[1:]
		case c == '"' || c == '\'':
			var b strings.Builder
			i := 1
			for {
				if i >= len(s) {
					return nil, false
				}
				if s[i] == c {
					if i+1 < len(s) && s[i+1] == c {
						b.WriteByte(c)
						i += 2
						continue
					}
					break
				}
				b.WriteByte(s[i])
				i++
			}
			k := byte('i')
			if c == '\'' {
				k = 's'
			}
			toks = append(toks, token{text: b.String(), quoted: true, kind: k})
			s = s[i+1:]
		case isHex(c):
			i := 0
			for i < len(s) && isHex(s[i]) {
				i++
			}
			if i < len(s) && s[i] == '/' {
				j := i + 1
				for j < len(s) && isHex(s[j]) {
					j++
				}
				if j == i+1 {
					return nil, false
				}
				toks = append(toks, token{text: s[:j], kind: 'l'})
				s = s[j:]
				continue
			}
			if isDigits(s[:i]) && (i == len(s) || !isIdent(s[i])) {
				toks = append(toks, token{text: s[:i], kind: 'n'})
				s = s[i:]
				continue
			}
			if c >= '0' && c <= '9' {
				return nil, false
			}
			fallthrough
		case isIdentStart(c):
			i := 0
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			toks = append(toks, token{text: strings.ToLower(s[:i]), kind: 'i'})
			s = s[i:]
		default:
			return nil, false
		}
	}
	return toks, true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// parser walks the tokens of one command.
type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() token {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return token{}
}

func (p *parser) next() token { t := p.peek(); p.pos++; return t }

// keyword consumes the unquoted identifier kw when it is next.
func (p *parser) keyword(kw string) bool {
	t := p.peek()
	if t.kind == 'i' && !t.quoted && t.text == kw {
		p.pos++
		return true
	}
	return false
}

// ident consumes an identifier (a slot name).
func (p *parser) ident() (string, bool) {
	t := p.peek()
	if t.kind != 'i' {
		return "", false
	}
	p.pos++
	return t.text, true
}

// end accepts an optional semicolon and then nothing.
func (p *parser) end() bool {
	if p.peek().kind == ';' {
		p.pos++
	}
	return p.pos == len(p.toks)
}

// parse recognises the physical replication commands pgverbs answers
// itself. ok is false for everything else (BASE_BACKUP, logical slots and
// replication, SQL, text the grammar refuses), which goes to the upstream
// so that its answer is PostgreSQL's own.
func parse(sql string) (command, bool) {
	toks, ok := lex(sql)
	if !ok || len(toks) == 0 {
		return command{}, false
	}
	p := &parser{toks: toks}
	var c command
	switch {
	case p.keyword("identify_system"):
		c.kind = cmdIdentifySystem
	case p.keyword("timeline_history"):
		t := p.next()
		n, err := strconv.ParseUint(t.text, 10, 32)
		if t.kind != 'n' || err != nil {
			return command{}, false
		}
		c.kind, c.timeline = cmdTimelineHistory, uint32(n)
	case p.keyword("show"):
		name, ok := p.ident()
		if !ok || name != "wal_segment_size" && name != "data_directory_mode" {
			return command{}, false
		}
		c.kind, c.name = cmdShow, name
	case p.keyword("read_replication_slot"):
		name, ok := p.ident()
		if !ok {
			return command{}, false
		}
		c.kind, c.name = cmdReadSlot, name
	case p.keyword("create_replication_slot"):
		if !p.createSlot(&c) {
			return command{}, false
		}
	case p.keyword("drop_replication_slot"):
		name, ok := p.ident()
		if !ok {
			return command{}, false
		}
		c.kind, c.name, c.wait = cmdDropSlot, name, p.keyword("wait")
	case p.keyword("start_replication"):
		if !p.start(&c) {
			return command{}, false
		}
	default:
		return command{}, false
	}
	if !p.end() {
		return command{}, false
	}
	return c, true
}

// createSlot parses CREATE_REPLICATION_SLOT name [TEMPORARY] PHYSICAL
// with the 15+ option list or the older bare keywords.
func (p *parser) createSlot(c *command) bool {
	name, ok := p.ident()
	if !ok {
		return false
	}
	c.kind, c.name = cmdCreateSlot, name
	c.temporary = p.keyword("temporary")
	if !p.keyword("physical") {
		return false
	}
	if p.peek().kind != '(' {
		for p.keyword("reserve_wal") {
			c.reserve = true
		}
		return true
	}
	p.pos++
	for {
		opt, ok := p.ident()
		if !ok || opt != "reserve_wal" {
			return false
		}
		c.reserve = true
		if t := p.peek(); t.kind == 'i' || t.kind == 's' || t.kind == 'n' {
			p.pos++
			v, ok := parseBool(t.text)
			if !ok {
				return false
			}
			c.reserve = v
		}
		switch p.next().kind {
		case ',':
			continue
		case ')':
			return true
		}
		return false
	}
}

// start parses START_REPLICATION [SLOT s] [PHYSICAL] X/X [TIMELINE n].
func (p *parser) start(c *command) bool {
	c.kind = cmdStart
	if p.keyword("slot") {
		name, ok := p.ident()
		if !ok {
			return false
		}
		c.name = name
	}
	p.keyword("physical")
	t := p.next()
	if t.kind != 'l' {
		return false
	}
	lsn, err := walstream.ParseLSN(t.text)
	if err != nil {
		return false
	}
	c.lsn = lsn
	if p.keyword("timeline") {
		t := p.next()
		n, err := strconv.ParseUint(t.text, 10, 32)
		if t.kind != 'n' || err != nil {
			return false
		}
		c.timeline = uint32(n)
	}
	return true
}

// parseBool reads a boolean option value as PostgreSQL's defGetBoolean.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "on", "1", "yes":
		return true, true
	case "false", "off", "0", "no":
		return false, true
	}
	return false, false
}
