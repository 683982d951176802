// Package conf builds pgverbs's configuration from four layers, each
// overriding the one before:
//
//  1. built-in defaults (Default),
//  2. a YAML file named by --config or PGVERBS_CONFIG,
//  3. PGVERBS_* environment variables,
//  4. command-line flags.
//
// Load assembles the layers and validates the result strictly: unknown YAML
// keys, malformed environment values and invalid fields are all errors, and
// Validate reports every problem at once rather than the first, so an
// operator fixes a broken deployment in one round trip.
//
// Every layer, the usage text, Validate and Config.String read one table,
// settings in settings.go: a new setting is a row there and a Config field.
// The object-storage targets (Config.Storage, storage.go) are the one
// exception: a map that only the file sets, with its own table of keys.
//
// The backend connection string may carry a password. Nothing this package
// returns (errors, RedactedBackend, Config.String) contains it; callers that
// log the backend must use RedactedBackend, never Config.Backend.
package conf
