package pgwire

// Type OIDs of the values pgverbs commands return (pg_type.dat).
const (
	BoolOID   uint32 = 16
	NameOID   uint32 = 19
	Int8OID   uint32 = 20
	Int4OID   uint32 = 23
	TextOID   uint32 = 25
	Float8OID uint32 = 701
	// TimestamptzOID values are written as showTime does, UTC with "+00".
	TimestamptzOID uint32 = 1184
	VarcharOID     uint32 = 1043
	PgLSNOID       uint32 = 3220
)
