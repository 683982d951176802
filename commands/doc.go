// Package commands holds the SQL commands pgverbs executes itself, and the
// registry the proxy consults to recognise them.
//
// Recognition has two stages so that ordinary SQL pays almost nothing:
//
//  1. Registry.MayContain is a byte scan of a Query or Parse text for the
//     first keyword of any registered command. Most SQL fails it at once.
//  2. Registry.Match runs only when stage 1 passes. It splits the text into
//     statements with PostgreSQL's own scanner (pg_query), so quotes,
//     comments and dollar-quoted bodies are honoured, and compares each
//     statement's leading keyword tokens with the registered commands.
//
// main.go registers the commands with a Registry. Their files: INSTALL
// EXTENSION in install.go, UNINSTALL EXTENSION in uninstall.go, the update
// of an installed package (INSTALL ... VERSION, ALTER EXTENSION ... UPDATE)
// in upgrade.go, the catalog work they share in catalog.go, objects.go
// (tracking an extension's members) and scriptrun.go (running a package's
// scripts); ALTER EXTENSION in alter.go; the SHOW EXTENSION listings in show.go,
// and SHOW PGVERBS, which reports on pgverbs itself, in showpgverbs.go; BASE BACKUP in
// basebackup.go with its grammar in basebackup_grammar.go; the shared
// grammar in grammar.go; Conn, Prepared and the other interfaces in
// command.go.
package commands
