// Package backend opens connections from pgverbs to the PostgreSQL server it
// fronts.
//
// Two kinds exist. Relayed sessions need a bare transport (TCP or unix
// socket, with TLS negotiated per sslmode) on which the proxy replays the
// client's own startup packet: Target.Dial gives that. The proxy's own work
// needs either the same transport (cancel requests: Target.Cancel) or a
// full pgconn connection (base backups: Target.Connect). Extension
// commands need neither: they run on the client's own session.
package backend
