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
// Each command lives in its own file and registers itself with a Registry.
package commands
