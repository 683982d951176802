package conf

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pgverbs/pgverbs/internal/localauth"
)

// setting is one row of the settings table: a Config field, its names in
// every layer, its usage text and its validation. The YAML file, the
// environment, the flags, the usage text, Validate and Config.String all
// read the table, so a new setting is one row and one Config field.
type setting struct {
	// key is the YAML key and the name errors report. The environment
	// variable is derived from it (see env), so the two cannot drift.
	key   string
	flag  string
	arg   string // placeholder shown in usage
	usage string
	field func(*Config) any // *string, *int, *time.Duration or *Peers
	// check validates the field on its own; nil accepts any value. A check
	// that needs two fields reports under the key of the one it blames.
	check func(*Config) error
	// secret marks a connection string that may hold a password: String
	// shows it redacted.
	secret bool
	// token marks a value that is a secret as a whole (a bearer token):
	// String shows only whether it is set.
	token bool
	// restart marks a setting read only at startup, so that a reload
	// changing it can say the change waits for a restart (RestartNeeded).
	restart bool
}

// text is s's value in c as text, a connection string redacted.
func (s setting) text(c *Config) string {
	v := fieldValue{s.field(c)}.String()
	switch {
	case s.secret:
		v, _ = redactConnString(v)
	case s.token && v != "":
		v = mask
	}
	return v
}

// envPrefix starts every environment variable pgverbs reads.
const envPrefix = "PGVERBS_"

// env is the environment variable that sets s.
func (s setting) env() string { return envPrefix + strings.ToUpper(s.key) }

var settings = []setting{{
	key: "listen", flag: "listen", arg: "ADDR",
	usage:   "host:port to accept client connections on",
	field:   func(c *Config) any { return &c.Listen },
	check:   func(c *Config) error { return validateListen(c.Listen) },
	restart: true,
}, {
	key: "backend", flag: "backend", arg: "CONNINFO",
	usage:   "PostgreSQL server to proxy to, as a libpq URL or key=value conninfo",
	field:   func(c *Config) any { return &c.Backend },
	check:   func(c *Config) error { return validateBackend(c.Backend) },
	secret:  true,
	restart: true,
}, {
	key: "tls_cert", flag: "tls-cert", arg: "FILE",
	usage: "PEM certificate offered to clients (requires --tls-key)",
	field: func(c *Config) any { return &c.TLSCert },
	check: func(c *Config) error {
		return errorIf(c.TLSCert == "" && c.TLSKey != "", "must be set when tls_key is set")
	},
}, {
	key: "tls_key", flag: "tls-key", arg: "FILE",
	usage: "PEM private key for --tls-cert",
	field: func(c *Config) any { return &c.TLSKey },
	check: func(c *Config) error {
		return errorIf(c.TLSKey == "" && c.TLSCert != "", "must be set when tls_cert is set")
	},
}, {
	key: "log_level", flag: "log-level", arg: "LEVEL",
	usage: "debug, info, warn or error",
	field: func(c *Config) any { return &c.LogLevel },
	check: func(c *Config) error { return oneOf(c.LogLevel, "debug", "info", "warn", "error") },
}, {
	key: "log_format", flag: "log-format", arg: "FORMAT",
	usage:   "console or json",
	field:   func(c *Config) any { return &c.LogFormat },
	check:   func(c *Config) error { return oneOf(c.LogFormat, "console", "json") },
	restart: true,
}, {
	key: "max_client_conns", flag: "max-client-conns", arg: "N",
	usage: "maximum concurrent client connections",
	field: func(c *Config) any { return &c.MaxClientConns },
	check: func(c *Config) error {
		return errorIf(c.MaxClientConns < 1, "%d is less than 1", c.MaxClientConns)
	},
}, {
	key: "shutdown_timeout", flag: "shutdown-timeout", arg: "DURATION",
	usage: "how long shutdown waits for sessions to finish; 0 closes them at once",
	field: func(c *Config) any { return &c.ShutdownTimeout },
	check: func(c *Config) error {
		return errorIf(c.ShutdownTimeout < 0, "%v is negative", c.ShutdownTimeout)
	},
}, {
	key: "auth_timeout", flag: "auth-timeout", arg: "DURATION",
	usage: "time a client has to complete startup and authentication",
	field: func(c *Config) any { return &c.AuthTimeout },
	check: func(c *Config) error {
		return errorIf(c.AuthTimeout <= 0, "%v is not positive", c.AuthTimeout)
	},
}, {
	key: "extensions_dir", flag: "extensions", arg: "DIR",
	usage:   "directory holding extension packages",
	field:   func(c *Config) any { return &c.ExtensionsDir },
	restart: true,
}, {
	key: "backup_root", flag: "backup-root", arg: "DIR",
	usage: "directory backups are written under; empty disables backups",
	field: func(c *Config) any { return &c.BackupRoot },
	check: func(c *Config) error {
		// Load resolves relative paths; only a hand-built Config gets here
		// with one, and its meaning would silently depend on the working
		// directory.
		return errorIf(c.BackupRoot != "" && !filepath.IsAbs(c.BackupRoot), "%q is not an absolute path", c.BackupRoot)
	},
	restart: true,
}, {
	key: "backup_conninfo", flag: "backup-conninfo", arg: "CONNINFO",
	usage: "conninfo for BASE BACKUP's own connections (default: the backend's)",
	field: func(c *Config) any { return &c.BackupConninfo },
	check: func(c *Config) error {
		if c.BackupConninfo == "" {
			return nil
		}
		return validateBackend(c.BackupConninfo)
	},
	secret:  true,
	restart: true,
}, {
	key: "extension_collision", flag: "extension-collision", arg: "server|package",
	usage:   "which wins when a package has the name of a server extension",
	field:   func(c *Config) any { return &c.ExtensionCollision },
	check:   func(c *Config) error { return oneOf(c.ExtensionCollision, "server", "package") },
	restart: true,
}, {
	key: "http_listen", flag: "http-listen", arg: "ADDR",
	usage: "host:port serving /metrics, /healthz, /readyz and the WAL archive's /wal/ over HTTP (HTTPS with --tls-cert); empty disables it",
	field: func(c *Config) any { return &c.HTTPListen },
	check: func(c *Config) error {
		if c.HTTPListen == "" {
			return nil
		}
		return validateListen(c.HTTPListen)
	},
	restart: true,
}, {
	key: "http_token", flag: "http-token", arg: "TOKEN",
	usage: "bearer token /wal/ requires (required when http_listen is not a loopback address); prefer http_token_file",
	field: func(c *Config) any { return &c.HTTPToken },
	check: func(c *Config) error {
		if c.HTTPToken != "" && c.HTTPTokenFile != "" {
			return errors.New("set either http_token or http_token_file, not both")
		}
		if c.HTTPToken != "" {
			return validateToken(c.HTTPToken)
		}
		if c.HTTPListen != "" && c.HTTPTokenFile == "" && !loopback(c.HTTPListen) {
			return fmt.Errorf("must be set (or http_token_file) when http_listen %q is not a loopback address: "+
				"/wal/ serves the WAL, which holds every row of the database; set a token, or bind http_listen to 127.0.0.1 or [::1]", c.HTTPListen)
		}
		return nil
	},
	token:   true,
	restart: true,
}, {
	key: "http_token_file", flag: "http-token-file", arg: "FILE",
	usage: "file holding the bearer token /wal/ requires (one line), instead of http_token",
	field: func(c *Config) any { return &c.HTTPTokenFile },
	check: func(c *Config) error {
		if c.HTTPTokenFile == "" {
			return nil
		}
		_, err := readTokenFile(c.HTTPTokenFile)
		return err
	},
	restart: true,
}, {
	key: "wal_auth_file", flag: "wal-auth-file", arg: "FILE",
	usage: "auth file (PgBouncer userlist.txt format: SCRAM verifiers or md5 hashes) checked by pgverbs itself while the backend is unreachable, for replication connections and wal_auth_admins",
	field: func(c *Config) any { return &c.WALAuthFile },
	check: func(c *Config) error {
		if c.WALAuthFile == "" {
			return nil
		}
		_, err := localauth.Load(c.WALAuthFile)
		return err
	},
}, {
	key: "wal_auth_admins", flag: "wal-auth-admins", arg: "ROLE[,ROLE...]",
	usage: "roles of wal_auth_file that may open a session while the backend is unreachable, to run FAILOVER WAL ARCHIVE and the SHOW WAL commands",
	field: func(c *Config) any { return &c.WALAuthAdmins },
	check: func(c *Config) error {
		if c.WALAuthAdmins != "" && c.WALAuthFile == "" {
			return errors.New("needs wal_auth_file")
		}
		return nil
	},
}, {
	key: "relay_mode", flag: "relay-mode", arg: "loop|goroutines",
	usage: "how sessions are relayed after authentication (TLS sessions always use goroutines)",
	field: func(c *Config) any { return &c.RelayMode },
	check: func(c *Config) error {
		if c.RelayMode == "loop" && DefaultRelayMode != "loop" {
			return errors.New("loop is not supported on this system; use goroutines")
		}
		return oneOf(c.RelayMode, "loop", "goroutines")
	},
	restart: true,
}, {
	key: "peer_id", flag: "peer-id", arg: "N",
	usage: "this instance's id (1-16383) among pgverbs instances behind one address, for cancel requests that land on another instance; 0 turns peering off",
	field: func(c *Config) any { return &c.PeerID },
	check: validatePeerID,
}, {
	key: "peers", flag: "peers", arg: "ID=HOST:PORT[,...]",
	usage: "the other instances' ids and listen addresses, where cancel requests for their sessions are forwarded (in YAML a mapping {1: \"host:port\"})",
	field: func(c *Config) any { return &c.Peers },
	check: validatePeers,
}}

// settingFor returns the row whose YAML key is key.
func settingFor(key string) (setting, bool) {
	i := slices.IndexFunc(settings, func(s setting) bool { return s.key == key })
	if i < 0 {
		return setting{}, false
	}
	return settings[i], true
}

// oneOf accepts v if it is one of allowed, case included.
func oneOf(v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
}

// errorIf is the error format describes when bad holds, else nil.
func errorIf(bad bool, format string, args ...any) error {
	if !bad {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// RestartNeeded returns the YAML keys of the settings that differ between
// old and cur but are read only at startup: the changes a reload cannot
// apply. Any change to the storage targets is named "storage", last.
func RestartNeeded(old, cur *Config) []string {
	var keys []string
	for _, s := range settings {
		if s.restart && (fieldValue{s.field(old)}).String() != (fieldValue{s.field(cur)}).String() {
			keys = append(keys, s.key)
		}
	}
	// maps.Equal treats nil and empty alike: "storage: {}" is no change.
	if !maps.Equal(old.Storage, cur.Storage) {
		keys = append(keys, storageKey)
	}
	return keys
}
