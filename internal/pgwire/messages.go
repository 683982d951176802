package pgwire

// Frontend is the type byte of a message from client to server.
type Frontend byte

// Frontend message types (protocol 3, after the startup phase).
const (
	Bind         Frontend = 'B'
	Close        Frontend = 'C'
	CopyData     Frontend = 'd'
	CopyDone     Frontend = 'c'
	CopyFail     Frontend = 'f'
	Describe     Frontend = 'D'
	Execute      Frontend = 'E'
	Flush        Frontend = 'H'
	FunctionCall Frontend = 'F'
	Parse        Frontend = 'P'
	// Password is also SASLInitialResponse, SASLResponse and GSSResponse:
	// only the server knows which it asked for.
	Password  Frontend = 'p'
	Query     Frontend = 'Q'
	Sync      Frontend = 'S'
	Terminate Frontend = 'X'
)

// Backend is the type byte of a message from server to client.
type Backend byte

// Backend message types.
const (
	Authentication           Backend = 'R'
	BackendKeyData           Backend = 'K'
	BindComplete             Backend = '2'
	CloseComplete            Backend = '3'
	CommandComplete          Backend = 'C'
	CopyBothResponse         Backend = 'W'
	CopyInResponse           Backend = 'G'
	CopyOutResponse          Backend = 'H'
	BackendCopyData          Backend = 'd'
	BackendCopyDone          Backend = 'c'
	DataRow                  Backend = 'D'
	EmptyQueryResponse       Backend = 'I'
	ErrorResponse            Backend = 'E'
	NegotiateProtocolVersion Backend = 'v'
	NoData                   Backend = 'n'
	NoticeResponse           Backend = 'N'
	NotificationResponse     Backend = 'A'
	ParameterDescription     Backend = 't'
	ParameterStatus          Backend = 'S'
	ParseComplete            Backend = '1'
	PortalSuspended          Backend = 's'
	ReadyForQuery            Backend = 'Z'
	RowDescription           Backend = 'T'
)

// Transaction status bytes of ReadyForQuery.
const (
	TxIdle    byte = 'I'
	TxBlock   byte = 'T'
	TxFailed  byte = 'E'
	TxUnknown byte = 0
)

// Object kinds of Describe and Close.
const (
	KindStatement byte = 'S'
	KindPortal    byte = 'P'
)

// Fixed messages: bodiless ones whose bytes never change. Callers only ever
// append or write them; they must not modify them.
var (
	FlushMsg         = []byte{byte(Flush), 0, 0, 0, 4}
	SyncMsg          = []byte{byte(Sync), 0, 0, 0, 4}
	ParseCompleteMsg = []byte{byte(ParseComplete), 0, 0, 0, 4}
	BindCompleteMsg  = []byte{byte(BindComplete), 0, 0, 0, 4}
	CloseCompleteMsg = []byte{byte(CloseComplete), 0, 0, 0, 4}
	NoDataMsg        = []byte{byte(NoData), 0, 0, 0, 4}
)

// HeaderLen is the size of a message's type byte and length word.
const HeaderLen = 5

// Answers to SSLRequest and GSSENCRequest: a single byte, not a message.
const (
	EncryptionAccepted byte = 'S'
	EncryptionRefused  byte = 'N'
)
