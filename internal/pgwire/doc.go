// Package pgwire names the pieces of PostgreSQL's frontend/backend protocol
// that pgverbs reads or writes by hand: message type bytes, a few fixed
// messages and the type OIDs of the values commands return.
//
// The same byte means different messages in the two directions ('D' is
// Describe from the client and DataRow from the server), so the two
// directions have distinct types and a frontend constant cannot be compared
// with a backend message's type by mistake.
package pgwire
