// Package backend opens connections from pgverbs to the PostgreSQL server it
// fronts.
//
// Two kinds exist. Relayed sessions need a bare transport (TCP or unix
// socket, with TLS negotiated per sslmode) on which the proxy replays the
// client's own startup packet: Target.Dial gives that. The proxy's own work
// (cancel requests now, extension installs and backups in later commands)
// needs either the same transport or a full pgconn connection: Target.Cancel
// and Target.Connect.
package backend
