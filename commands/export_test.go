package commands

// ParseShow parses one of the SHOW statements of pgverbs, telling which by
// Kind, for the external tests.
func ParseShow(sql string) (*ShowStmt, error) {
	return parse(sql, func(p *parser) (*ShowStmt, error) { return p.show(0) })
}
