// Package localauth lets pgverbs authenticate a client itself, against an
// auth file, when authentication cannot be relayed to the upstream server
// because that server is unreachable: standbys (re)connecting to stream
// from the WAL archive, and operators' admin sessions during a failover.
//
// # The auth file
//
// The file (wal_auth_file) has PgBouncer's userlist.txt format: one
// `"user" "password"` pair per line, `;` and `#` comment lines, blank lines,
// and `""` inside quotes for a literal quote. The password is what
// PostgreSQL stores in pg_authid.rolpassword, a SCRAM-SHA-256 verifier or an
// md5 hash, so an operator can copy it from `SELECT rolname, rolpassword
// FROM pg_authid`, or plain text as PgBouncer allows. Load is stricter than
// PgBouncer where being lenient would hide a mistake in a file that is only
// read when the primary is down: it refuses a file other users can read
// (a group may, if root owns the file), a
// value that starts like a SCRAM verifier but does not parse, a user listed
// twice, empty passwords and text after the password.
//
// # The exchange
//
// The caller reads the StartupMessage, looks the user up and calls
// Authenticate, which runs the exchange PostgreSQL's backend runs for the
// scram-sha-256 and md5 pg_hba methods:
//
//  1. A SCRAM verifier or a plain password: AuthenticationSASL offering
//     SCRAM-SHA-256 (never -PLUS: a session with pgverbs has no server
//     certificate to bind to), the client-first message, the
//     server-first message with the verifier's salt and iteration count,
//     the client-final message whose proof is checked against StoredKey,
//     and AuthenticationSASLFinal with the server signature from ServerKey.
//     A plain password gets a fresh salt and its keys derived on each
//     exchange, as PostgreSQL would have derived them at CREATE ROLE.
//  2. An md5 hash: AuthenticationMD5Password with a random salt, and the
//     client's PasswordMessage compared with md5(hash + salt).
//
// Authenticate sends no AuthenticationOk: the caller sends it with the rest
// of its startup reply. Its errors are FATAL ErrorResponses for the caller
// to send, in PostgreSQL's words and SQLSTATEs: a wrong password is 28P01
// `password authentication failed for user "..."`, the same text NoSuchUser
// gives for a user absent from the file (PostgreSQL does not reveal whether a
// role exists; passing the zero Entry goes further and runs PostgreSQL's
// mock exchange, which fails at the same step as a wrong password), and a
// malformed message is 08P01 with auth-scram.c's message and detail.
package localauth
