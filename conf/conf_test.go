package conf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// env is a map-backed getenv, so tests never see the real environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// mustContainAll fails unless err's text holds every want.
func mustContainAll(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want one mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestDefault(t *testing.T) {
	d := Default()
	want := Config{
		Listen:             "127.0.0.1:6432",
		Backend:            "postgres://localhost:5432",
		LogLevel:           "info",
		LogFormat:          "console",
		MaxClientConns:     1000,
		ShutdownTimeout:    30 * time.Second,
		AuthTimeout:        60 * time.Second,
		ExtensionsDir:      "./extensions",
		ExtensionCollision: "server",
		RelayMode:          DefaultRelayMode,
	}
	if !sameValues(d, want) {
		t.Fatalf("Default() = %+v\nwant %+v", d, want)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}

	got, err := Load(nil, env{}.get, nil)
	if err != nil {
		t.Fatalf("Load with nothing set: %v", err)
	}
	if !sameValues(*got, want) {
		t.Fatalf("Load with nothing set = %+v\nwant %+v", *got, want)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "pgverbs.yaml", `
listen: 10.0.0.1:1111
log_level: debug
log_format: json
max_client_conns: 10
shutdown_timeout: 10s
extensions_dir: /file/ext
`)
	tokenFile := writeFile(t, "token", "t0ken\n")
	everyKey := writeFile(t, "every.yaml", `
listen: ":7000"
backend: host=db
tls_cert: ""
tls_key: ""
log_level: warn
log_format: json
max_client_conns: 8
shutdown_timeout: 4s
auth_timeout: 5s
extensions_dir: /ext
backup_root: /b
backup_conninfo: host=replica
extension_collision: package
http_listen: 127.0.0.1:9187
http_token_file: `+tokenFile+`
relay_mode: goroutines
`)
	tests := []struct {
		name  string
		args  []string
		env   env
		check func(*Config) string
	}{
		{
			name: "file over defaults",
			args: []string{"--config", file},
			check: func(c *Config) string {
				if c.Listen != "10.0.0.1:1111" || c.LogLevel != "debug" || c.MaxClientConns != 10 ||
					c.ShutdownTimeout != 10*time.Second || c.ExtensionsDir != "/file/ext" {
					return "file values not applied"
				}
				if c.AuthTimeout != 60*time.Second || c.Backend != "postgres://localhost:5432" {
					return "keys absent from the file lost their defaults"
				}
				if c.ConfigFile != file {
					return "ConfigFile not recorded"
				}
				return ""
			},
		},
		{
			name: "env over file",
			args: []string{"--config", file},
			env:  env{"PGVERBS_LISTEN": "10.0.0.2:2222", "PGVERBS_MAX_CLIENT_CONNS": "20", "PGVERBS_SHUTDOWN_TIMEOUT": "20s"},
			check: func(c *Config) string {
				if c.Listen != "10.0.0.2:2222" || c.MaxClientConns != 20 || c.ShutdownTimeout != 20*time.Second {
					return "env did not override file"
				}
				if c.LogLevel != "debug" || c.ExtensionsDir != "/file/ext" {
					return "file values not set in env were lost"
				}
				return ""
			},
		},
		{
			name: "flags over env over file",
			args: []string{"--config", file, "--listen", "10.0.0.3:3333", "--max-client-conns=30", "--log-level", "warn"},
			env:  env{"PGVERBS_LISTEN": "10.0.0.2:2222", "PGVERBS_MAX_CLIENT_CONNS": "20", "PGVERBS_LOG_FORMAT": "console"},
			check: func(c *Config) string {
				if c.Listen != "10.0.0.3:3333" || c.MaxClientConns != 30 || c.LogLevel != "warn" {
					return "flags did not win"
				}
				if c.LogFormat != "console" {
					return "env not applied where no flag was given"
				}
				if c.ShutdownTimeout != 10*time.Second {
					return "file not applied where no env or flag was given"
				}
				return ""
			},
		},
		{
			name: "PGVERBS_CONFIG names the file",
			env:  env{"PGVERBS_CONFIG": file},
			check: func(c *Config) string {
				if c.Listen != "10.0.0.1:1111" || c.ConfigFile != file {
					return "file from PGVERBS_CONFIG not loaded"
				}
				return ""
			},
		},
		{
			name: "--config overrides PGVERBS_CONFIG",
			args: []string{"--config="},
			env:  env{"PGVERBS_CONFIG": file},
			check: func(c *Config) string {
				if c.Listen != "127.0.0.1:6432" || c.ConfigFile != "" {
					return "--config= did not disable the env-named file"
				}
				return ""
			},
		},
		{
			name: "every env variable",
			env: env{
				"PGVERBS_LISTEN":              ":7000",
				"PGVERBS_BACKEND":             "host=db port=5433",
				"PGVERBS_LOG_LEVEL":           "error",
				"PGVERBS_LOG_FORMAT":          "json",
				"PGVERBS_MAX_CLIENT_CONNS":    "5",
				"PGVERBS_SHUTDOWN_TIMEOUT":    "1s",
				"PGVERBS_AUTH_TIMEOUT":        "2s",
				"PGVERBS_EXTENSIONS_DIR":      "/ext",
				"PGVERBS_BACKUP_ROOT":         "/backups",
				"PGVERBS_EXTENSION_COLLISION": "package",
				"PGVERBS_RELAY_MODE":          "goroutines",
				"PGVERBS_HTTP_LISTEN":         ":9000",
				"PGVERBS_HTTP_TOKEN":          "t0ken",
			},
			check: func(c *Config) string {
				want := Config{Listen: ":7000", Backend: "host=db port=5433", LogLevel: "error", LogFormat: "json",
					MaxClientConns: 5, ShutdownTimeout: time.Second, AuthTimeout: 2 * time.Second,
					ExtensionsDir: "/ext", BackupRoot: "/backups", ExtensionCollision: "package", RelayMode: "goroutines",
					HTTPListen: ":9000", HTTPToken: "t0ken"}
				if !sameValues(*c, want) {
					return fmt.Sprintf("got %+v", *c)
				}
				return ""
			},
		},
		{
			name: "every yaml key",
			args: []string{"--config", everyKey},
			check: func(c *Config) string {
				want := Config{Listen: ":7000", Backend: "host=db", LogLevel: "warn", LogFormat: "json",
					MaxClientConns: 8, ShutdownTimeout: 4 * time.Second, AuthTimeout: 5 * time.Second,
					ExtensionsDir: "/ext", BackupRoot: "/b", BackupConninfo: "host=replica",
					ExtensionCollision: "package", RelayMode: "goroutines", HTTPListen: "127.0.0.1:9187", HTTPTokenFile: tokenFile, ConfigFile: everyKey}
				if !sameValues(*c, want) {
					return fmt.Sprintf("got %+v", *c)
				}
				return ""
			},
		},
		{
			name: "every flag",
			args: []string{"--listen", ":7000", "--backend", "host=db", "--log-level", "debug",
				"--log-format", "json", "--max-client-conns", "7", "--shutdown-timeout", "0s", "--auth-timeout", "3s",
				"--extensions", "/ext", "--backup-root", "/b", "--extension-collision", "package", "--relay-mode", "goroutines",
				"--http-listen", "[::1]:9187", "--http-token", "t0ken"},
			check: func(c *Config) string {
				want := Config{Listen: ":7000", Backend: "host=db", LogLevel: "debug", LogFormat: "json",
					MaxClientConns: 7, ShutdownTimeout: 0, AuthTimeout: 3 * time.Second,
					ExtensionsDir: "/ext", BackupRoot: "/b", ExtensionCollision: "package", RelayMode: "goroutines",
					HTTPListen: "[::1]:9187", HTTPToken: "t0ken"}
				if !sameValues(*c, want) {
					return fmt.Sprintf("got %+v", *c)
				}
				return ""
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, tt.env.get, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if msg := tt.check(c); msg != "" {
				t.Errorf("%s: %+v", msg, *c)
			}
		})
	}
}

func TestFlagSyntax(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"space separated", []string{"--listen", "0.0.0.0:7777", "--auth-timeout", "5s"}},
		{"equals", []string{"--listen=0.0.0.0:7777", "--auth-timeout=5s"}},
		{"single dash", []string{"-listen", "0.0.0.0:7777", "-auth-timeout=5s"}},
		{"mixed", []string{"--listen=0.0.0.0:7777", "-auth-timeout", "5s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, env{}.get, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen != "0.0.0.0:7777" || c.AuthTimeout != 5*time.Second {
				t.Errorf("got listen %q auth_timeout %v", c.Listen, c.AuthTimeout)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown flag", []string{"--nope"}, []string{"nope"}},
		{"bad int", []string{"--max-client-conns", "many"}, []string{"max-client-conns", "not an integer"}},
		{"bad duration", []string{"--shutdown-timeout=30"}, []string{"shutdown-timeout", "not a duration"}},
		{"missing value", []string{"--listen"}, []string{"listen"}},
		{"positional", []string{"--listen", ":1", "stray"}, []string{"position 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.args, env{}.get, nil)
			mustContainAll(t, err, tt.want...)
		})
	}
}

// TestHelp checks the usage text against a list written by hand rather
// than against the settings table it is printed from, so that a setting
// dropped from the table, renamed or misdescribed fails here.
func TestHelp(t *testing.T) {
	// Every flag in the order the usage lists them, with its placeholder,
	// environment variable and YAML key.
	flags := []struct{ flag, env, yaml string }{
		{"--config FILE", "PGVERBS_CONFIG", ""},
		{"--listen ADDR", "PGVERBS_LISTEN", "listen"},
		{"--backend CONNINFO", "PGVERBS_BACKEND", "backend"},
		{"--tls-cert FILE", "PGVERBS_TLS_CERT", "tls_cert"},
		{"--tls-key FILE", "PGVERBS_TLS_KEY", "tls_key"},
		{"--log-level LEVEL", "PGVERBS_LOG_LEVEL", "log_level"},
		{"--log-format FORMAT", "PGVERBS_LOG_FORMAT", "log_format"},
		{"--max-client-conns N", "PGVERBS_MAX_CLIENT_CONNS", "max_client_conns"},
		{"--shutdown-timeout DURATION", "PGVERBS_SHUTDOWN_TIMEOUT", "shutdown_timeout"},
		{"--auth-timeout DURATION", "PGVERBS_AUTH_TIMEOUT", "auth_timeout"},
		{"--extensions DIR", "PGVERBS_EXTENSIONS_DIR", "extensions_dir"},
		{"--backup-root DIR", "PGVERBS_BACKUP_ROOT", "backup_root"},
		{"--backup-conninfo CONNINFO", "PGVERBS_BACKUP_CONNINFO", "backup_conninfo"},
		{"--extension-collision server|package", "PGVERBS_EXTENSION_COLLISION", "extension_collision"},
		{"--http-listen ADDR", "PGVERBS_HTTP_LISTEN", "http_listen"},
		{"--http-token TOKEN", "PGVERBS_HTTP_TOKEN", "http_token"},
		{"--http-token-file FILE", "PGVERBS_HTTP_TOKEN_FILE", "http_token_file"},
		{"--wal-auth-file FILE", "PGVERBS_WAL_AUTH_FILE", "wal_auth_file"},
		{"--wal-auth-admins ROLE[,ROLE...]", "PGVERBS_WAL_AUTH_ADMINS", "wal_auth_admins"},
		{"--relay-mode loop|goroutines", "PGVERBS_RELAY_MODE", "relay_mode"},
		{"--peer-id N", "PGVERBS_PEER_ID", "peer_id"},
		{"--peers ID=HOST:PORT[,...]", "PGVERBS_PEERS", "peers"},
	}
	// Whole entries, pinning the layout, descriptions and defaults.
	exact := []string{
		"Usage: pgverbs [flags]\n",
		"  --config FILE\n    \tYAML configuration file (env PGVERBS_CONFIG)\n",
		"  --listen ADDR\n    \thost:port to accept client connections on " +
			"(default \"127.0.0.1:6432\", env PGVERBS_LISTEN, yaml listen)\n",
		"  --max-client-conns N\n    \tmaximum concurrent client connections " +
			"(default 1000, env PGVERBS_MAX_CLIENT_CONNS, yaml max_client_conns)\n",
		"  --shutdown-timeout DURATION\n    \thow long shutdown waits for sessions to finish; 0 closes them at once " +
			"(default 30s, env PGVERBS_SHUTDOWN_TIMEOUT, yaml shutdown_timeout)\n",
		"  --auth-timeout DURATION\n    \ttime a client has to complete startup and authentication " +
			"(default 1m0s, env PGVERBS_AUTH_TIMEOUT, yaml auth_timeout)\n",
		"  --backup-root DIR\n    \tdirectory backups are written under; empty disables backups " +
			"(env PGVERBS_BACKUP_ROOT, yaml backup_root)\n",
		"  --extension-collision server|package\n    \twhich wins when a package has the name of a server extension " +
			"(default \"server\", env PGVERBS_EXTENSION_COLLISION, yaml extension_collision)\n",
	}
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var out bytes.Buffer
			c, err := Load([]string{arg}, env{}.get, &out)
			if !errors.Is(err, flag.ErrHelp) || c != nil {
				t.Fatalf("Load(%q) = %v, %v; want nil, flag.ErrHelp", arg, c, err)
			}
			usage := out.String()
			for _, w := range exact {
				if !strings.Contains(usage, w) {
					t.Errorf("usage lacks %q", w)
				}
			}

			// Each entry is a "  --flag ARG" line and a description line
			// that ends with the entry's environment variable and key.
			lines := strings.Split(usage, "\n")
			var got []string
			descs := map[string]string{}
			for i, l := range lines {
				if name, ok := strings.CutPrefix(l, "  --"); ok && i+1 < len(lines) {
					got = append(got, "--"+name)
					descs["--"+name] = lines[i+1]
				}
			}
			var want []string
			for _, f := range flags {
				want = append(want, f.flag)
				suffix := fmt.Sprintf("env %s, yaml %s)", f.env, f.yaml)
				if f.yaml == "" {
					suffix = fmt.Sprintf("(env %s)", f.env)
				}
				if d := descs[f.flag]; !strings.HasSuffix(d, suffix) {
					t.Errorf("%s is described as %q, want it to end with %q", f.flag, d, suffix)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("usage lists flags\n%s\nwant\n%s\nfull usage:\n%s",
					strings.Join(got, "\n"), strings.Join(want, "\n"), usage)
			}
		})
	}
}

func TestYAMLErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key", "listen: :1\nlisten_addr: :2\n", []string{`unknown key "listen_addr"`, "line 2"}},
		{"two unknown keys", "lissen: :1\nlog_level: info\nbakend: x\n",
			[]string{`"lissen"`, "line 1", `"bakend"`, "line 3"}},
		{"duration without unit", "auth_timeout: 30\n", []string{"line 1", `"30"`, "duration"}},
		{"duration garbage", "\nshutdown_timeout: soon\n", []string{"line 2", `"soon"`}},
		{"duration not scalar", "auth_timeout: [1s]\n", []string{"line 1", "duration"}},
		{"int garbage", "max_client_conns: lots\n", []string{"line 1", "lots"}},
		{"syntax", "listen: [\n", []string{"config file"}},
		{"two documents", "listen: :1\n---\nlisten: :2\n", []string{"more than one YAML document"}},
		{"not a mapping", "- listen\n", []string{"line 1", "must be a mapping", "!!seq"}},
		{"scalar document", "listen\n", []string{"line 1", "must be a mapping"}},
		{"duplicate key", "listen: :1\nlog_level: info\nlisten: :2\n", []string{`line 3: mapping key "listen" already defined at line 1`}},
		{"merge key", "<<: {listen: \":5\"}\n", []string{`line 1: unknown key "<<"`}},
		{"string given a list", "listen: [a]\n", []string{"line 1", "!!seq"}},
		{"every problem at once", "max_client_conns: lots\nauth_timeout: 5\nnope: 1\n",
			[]string{"line 1", "lots", "line 2", `"5"`, `line 3: unknown key "nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "c.yaml", tt.yaml)
			_, err := Load([]string{"--config", p}, env{}.get, nil)
			mustContainAll(t, err, append(tt.want, p)...)
		})
	}

	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "absent.yaml")
		_, err := Load(nil, env{"PGVERBS_CONFIG": p}.get, nil)
		mustContainAll(t, err, p)
	})
	t.Run("empty file", func(t *testing.T) {
		p := writeFile(t, "c.yaml", "# nothing here\n")
		c, err := Load([]string{"--config", p}, env{}.get, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != Default().Listen || c.ConfigFile != p {
			t.Errorf("got %+v", *c)
		}
	})
	t.Run("null document", func(t *testing.T) {
		p := writeFile(t, "c.yaml", "~\n")
		c, err := Load([]string{"--config", p}, env{}.get, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != Default().Listen {
			t.Errorf("got %+v", *c)
		}
	})
	t.Run("null keeps default", func(t *testing.T) {
		p := writeFile(t, "c.yaml", "listen:\nauth_timeout: ~\n")
		c, err := Load([]string{"--config", p}, env{}.get, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Listen != Default().Listen || c.AuthTimeout != Default().AuthTimeout {
			t.Errorf("got %+v", *c)
		}
	})
	t.Run("empty string clears", func(t *testing.T) {
		p := writeFile(t, "c.yaml", "listen: \"\"\n")
		_, err := Load([]string{"--config", p}, env{}.get, nil)
		mustContainAll(t, err, "listen: must not be empty")
	})
}

func TestBadEnv(t *testing.T) {
	tests := []struct {
		name string
		env  env
		want []string
	}{
		{"int", env{"PGVERBS_MAX_CLIENT_CONNS": "abc"}, []string{"PGVERBS_MAX_CLIENT_CONNS", `"abc"`}},
		{"shutdown duration", env{"PGVERBS_SHUTDOWN_TIMEOUT": "30"}, []string{"PGVERBS_SHUTDOWN_TIMEOUT", "duration"}},
		{"auth duration", env{"PGVERBS_AUTH_TIMEOUT": "a minute"}, []string{"PGVERBS_AUTH_TIMEOUT"}},
		{"several at once", env{"PGVERBS_MAX_CLIENT_CONNS": "x", "PGVERBS_AUTH_TIMEOUT": "y", "PGVERBS_LOG_LEVEL": "loud"},
			[]string{"PGVERBS_MAX_CLIENT_CONNS", "PGVERBS_AUTH_TIMEOUT", "log_level"}},
		{"valid value invalid setting", env{"PGVERBS_MAX_CLIENT_CONNS": "0"}, []string{"max_client_conns"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(nil, tt.env.get, nil)
			mustContainAll(t, err, tt.want...)
		})
	}

	t.Run("flag does not excuse bad env", func(t *testing.T) {
		_, err := Load([]string{"--max-client-conns", "5"}, env{"PGVERBS_MAX_CLIENT_CONNS": "abc"}.get, nil)
		mustContainAll(t, err, "PGVERBS_MAX_CLIENT_CONNS")
	})
}

func TestValidateReportsEveryField(t *testing.T) {
	c := Config{
		Listen:          "nohostport",
		Backend:         "host=db port=notaport",
		TLSCert:         "/only/cert.pem",
		LogLevel:        "verbose",
		LogFormat:       "xml",
		MaxClientConns:  0,
		ShutdownTimeout: -time.Second,
		AuthTimeout:     0,
		BackupRoot:      "relative/dir",
		// ExtensionCollision left empty: neither server nor package.
		RelayMode:  "threads",
		HTTPListen: "nonsense",
		HTTPToken:  "two words",
	}
	err := c.Validate()
	mustContainAll(t, err, "listen: ", "backend: ", "tls_key: ", "log_level: ", "log_format: ",
		"max_client_conns: ", "shutdown_timeout: ", "auth_timeout: ", "backup_root: ", "extension_collision: ", "http_listen: ", "http_token: ", "relay_mode: ")
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 13 {
		t.Errorf("got %d errors, want 13:\n%v", n, err)
	}
}

func TestValidateFields(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" means valid
	}{
		{"ipv6 listen", func(c *Config) { c.Listen = "[::1]:6432" }, ""},
		{"all interfaces", func(c *Config) { c.Listen = ":6432" }, ""},
		{"empty listen", func(c *Config) { c.Listen = "" }, "listen: must not be empty"},
		{"no port", func(c *Config) { c.Listen = "localhost" }, "listen: "},
		{"port zero", func(c *Config) { c.Listen = "localhost:0" }, "listen: "},
		{"port too big", func(c *Config) { c.Listen = "localhost:65536" }, "listen: "},
		{"named port", func(c *Config) { c.Listen = "localhost:postgresql" }, "listen: "},
		{"max port", func(c *Config) { c.Listen = "localhost:65535" }, ""},
		{"keyword backend", func(c *Config) { c.Backend = "host=db port=5432 dbname=app sslmode=disable" }, ""},
		{"url backend", func(c *Config) { c.Backend = "postgres://u@db:5432/app?sslmode=prefer" }, ""},
		{"empty backend", func(c *Config) { c.Backend = "" }, "backend: must not be empty"},
		{"bad sslmode", func(c *Config) { c.Backend = "postgres://db/app?sslmode=sometimes" }, "backend: invalid connection string"},
		{"detail kept without secret", func(c *Config) { c.Backend = "postgres://db:5432/app?sslmode" }, `"sslmode"`},
		{"zero shutdown", func(c *Config) { c.ShutdownTimeout = 0 }, ""},
		{"negative shutdown", func(c *Config) { c.ShutdownTimeout = -1 }, "shutdown_timeout: "},
		{"zero auth", func(c *Config) { c.AuthTimeout = 0 }, "auth_timeout: "},
		{"one conn", func(c *Config) { c.MaxClientConns = 1 }, ""},
		{"negative conns", func(c *Config) { c.MaxClientConns = -5 }, "max_client_conns: "},
		{"level case matters", func(c *Config) { c.LogLevel = "INFO" }, "log_level: "},
		{"absolute backup root", func(c *Config) { c.BackupRoot = "/var/backups" }, ""},
		{"relative backup root", func(c *Config) { c.BackupRoot = "backups" }, "backup_root: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			mustContainAll(t, err, tt.want)
		})
	}
}

func TestDurations(t *testing.T) {
	file := writeFile(t, "c.yaml", "shutdown_timeout: 2m\nauth_timeout: 1m30s\n")
	tests := []struct {
		name           string
		args           []string
		env            env
		shutdown, auth time.Duration
	}{
		{"yaml", []string{"--config", file}, nil, 2 * time.Minute, 90 * time.Second},
		{"env", nil, env{"PGVERBS_SHUTDOWN_TIMEOUT": "250ms", "PGVERBS_AUTH_TIMEOUT": "1h"}, 250 * time.Millisecond, time.Hour},
		{"flags", []string{"--shutdown-timeout", "0", "--auth-timeout=2m"}, nil, 0, 2 * time.Minute},
		{"flag over yaml", []string{"--config", file, "--auth-timeout", "5s"}, nil, 2 * time.Minute, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, tt.env.get, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.ShutdownTimeout != tt.shutdown || c.AuthTimeout != tt.auth {
				t.Errorf("got shutdown %v auth %v, want %v %v", c.ShutdownTimeout, c.AuthTimeout, tt.shutdown, tt.auth)
			}
		})
	}

	t.Run("negative shutdown via flag", func(t *testing.T) {
		_, err := Load([]string{"--shutdown-timeout=-1s"}, env{}.get, nil)
		mustContainAll(t, err, "shutdown_timeout")
	})
	t.Run("zero auth via yaml", func(t *testing.T) {
		p := writeFile(t, "c.yaml", "auth_timeout: 0s\n")
		_, err := Load([]string{"--config", p}, env{}.get, nil)
		mustContainAll(t, err, "auth_timeout")
	})
}

func TestBackupRoot(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
	}{
		{"unset stays disabled", "", ""},
		{"absolute kept", "/srv/backups", "/srv/backups"},
		{"relative made absolute", "b/../backups", filepath.Join(wd, "backups")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(nil, env{"PGVERBS_BACKUP_ROOT": tt.in}.get, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.BackupRoot != tt.want {
				t.Errorf("BackupRoot = %q, want %q", c.BackupRoot, tt.want)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := pgtest.WriteSelfSigned(t, dir, "a")
	_, keyB := pgtest.WriteSelfSigned(t, dir, "b")
	keyPEM, err := os.ReadFile(keyA)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		cert, key string
		want      []string // nil means valid
	}{
		{"neither", "", "", nil},
		{"matching pair", certA, keyA, nil},
		{"cert without key", certA, "", []string{"tls_key: must be set when tls_cert is set"}},
		{"key without cert", "", keyA, []string{"tls_cert: must be set when tls_key is set"}},
		{"mismatched pair", certA, keyB, []string{"tls_cert, tls_key", certA, keyB}},
		{"missing file", certA, filepath.Join(dir, "absent.key"), []string{"tls_cert, tls_key", "absent.key"}},
		{"swapped", keyA, certA, []string{"tls_cert, tls_key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load([]string{"--tls-cert", tt.cert, "--tls-key", tt.key}, env{}.get, nil)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if c.TLSCert != tt.cert || c.TLSKey != tt.key {
					t.Errorf("got cert %q key %q", c.TLSCert, c.TLSKey)
				}
				return
			}
			mustContainAll(t, err, tt.want...)
			// The key body must never be echoed.
			body := strings.Split(string(keyPEM), "\n")[1]
			if strings.Contains(err.Error(), body) {
				t.Errorf("error contains key material: %v", err)
			}
		})
	}
}

const password = "S3cr3tPw9"

// secretPieces is the password and the fragments of it a careless parser
// might quote on their own.
var secretPieces = []string{password, "S3cr3t", "3tPw9", "Pw9x", "cr3t"}

func TestSecretsNeverLeak(t *testing.T) {
	tests := []struct {
		name     string
		backend  string
		valid    bool
		redacted string // "" skips the exact check
	}{
		{"url valid", "postgres://alice:" + password + "@db:5432/app", true, "postgres://alice:xxxxx@db:5432/app"},
		{"postgresql scheme", "postgresql://alice:" + password + "@db/app", true, "postgresql://alice:xxxxx@db/app"},
		{"url bad port", "postgres://alice:" + password + "@db:notaport/app", false, "postgres://alice:xxxxx@db:notaport/app"},
		{"url bad sslmode", "postgres://alice:" + password + "@db/app?sslmode=bogus", false, "postgres://alice:xxxxx@db/app?sslmode=bogus"},
		{"url slash in password", "postgres://alice:S3c/r3tPw9@db/app", false, "postgres://alice:xxxxx@db/app"},
		{"url slash in password parses", "postgres://alice:12/S3cr3tPw9@db/app", true, "postgres://alice:xxxxx@db/app"},
		{"url slash and query in password", "postgres://alice:S3c/r3t?Pw9x@db/app", false, ""},
		{"url space in password", "postgres://alice:S3cr3t Pw9x@db/app", false, "postgres://alice:xxxxx@db/app"},
		{"url bad escape in password", "postgres://alice:S3cr3t%zzPw9x@db/app", false, "postgres://alice:xxxxx@db/app"},
		{"url password param", "postgres://db/app?password=" + password + "&sslmode=bogus", false, "postgres://db/app?password=xxxxx&sslmode=bogus"},
		{"url encoded password key", "postgres://db/app?pass%77ord=" + password, true, "postgres://db/app?pass%77ord=xxxxx"},
		{"url sslpassword param", "postgres://db/app?sslpassword=" + password, true, "postgres://db/app?sslpassword=xxxxx"},
		{"url password and at in query", "postgres://db/app?user=me@corp&password=" + password, true, "postgres://db/app?user=me@corp&password=xxxxx"},
		{"url bad session attrs", "postgres://alice:" + password + "@db/app?target_session_attrs=bogus", false, ""},
		{"kv valid", "host=db password=" + password + " dbname=app", true, "host=db password=xxxxx dbname=app"},
		{"kv spaces around equals", "host=db password = " + password + " port=5432", true, "host=db password = xxxxx port=5432"},
		{"kv quoted", "host=db password='S3cr3t Pw9x' port=abc", false, "host=db password=xxxxx port=abc"},
		{"kv quoted escape", `host=db password='S3cr3t\' Pw9x' sslmode=bogus`, false, "host=db password=xxxxx sslmode=bogus"},
		{"kv unquoted space", "host=db password=S3cr3t Pw9x port=1", false, "host=db password=xxxxx xxxxx"},
		{"kv unterminated quote", "host=db password='S3cr3tPw9", false, "host=db password=xxxxx"},
		{"kv bad sslmode", "host=db sslmode=bogus password=" + password, false, "host=db sslmode=bogus password=xxxxx"},
		{"kv garbage before password", "host=db junk password=" + password, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Backend = tt.backend
			verr := c.Validate()
			if tt.valid != (verr == nil) {
				t.Errorf("Validate() = %v, want valid=%v", verr, tt.valid)
			}
			if !tt.valid {
				mustContainAll(t, verr, "backend: invalid connection string")
			}
			_, lerr := Load([]string{"--backend", tt.backend}, env{}.get, nil)
			_, eerr := Load(nil, env{"PGVERBS_BACKEND": tt.backend}.get, nil)

			red := c.RedactedBackend()
			if tt.redacted != "" && red != tt.redacted {
				t.Errorf("RedactedBackend() = %q, want %q", red, tt.redacted)
			}
			checkNoLeak(t, "backend", map[string]string{"RedactedBackend": red, "String": c.String(), "Sprintf %v": fmt.Sprintf("%v", c)},
				map[string]error{"Validate": verr, "Load flag": lerr, "Load env": eerr})
			t.Logf("redacted: %s; error: %v", red, verr)

			// The same string as backup_conninfo, which may hold a
			// password just the same.
			b := Default()
			b.BackupConninfo = tt.backend
			berr := b.Validate()
			if tt.valid != (berr == nil) {
				t.Errorf("backup_conninfo: Validate() = %v, want valid=%v", berr, tt.valid)
			}
			if !tt.valid {
				mustContainAll(t, berr, "backup_conninfo: invalid connection string")
			}
			if tt.redacted != "" && b.RedactedBackupConninfo() != tt.redacted {
				t.Errorf("RedactedBackupConninfo() = %q, want %q", b.RedactedBackupConninfo(), tt.redacted)
			}
			_, blerr := Load([]string{"--backup-conninfo", tt.backend}, env{}.get, nil)
			_, beerr := Load(nil, env{"PGVERBS_BACKUP_CONNINFO": tt.backend}.get, nil)
			checkNoLeak(t, "backup_conninfo", map[string]string{"String": b.String(), "Sprintf %v": fmt.Sprintf("%v", b)},
				map[string]error{"Validate": berr, "Load flag": blerr, "Load env": beerr})
		})
	}

	t.Run("yaml file", func(t *testing.T) {
		p := writeFile(t, "c.yaml", "backend: postgres://alice:"+password+"@db:bad/app\n")
		_, err := Load([]string{"--config", p}, env{}.get, nil)
		mustContainAll(t, err, "backend")
		if strings.Contains(err.Error(), password) {
			t.Errorf("error leaks password: %v", err)
		}
	})
}

// checkNoLeak fails if any output or error text holds a piece of the
// test password.
func checkNoLeak(t *testing.T, what string, outputs map[string]string, errs map[string]error) {
	t.Helper()
	for name, err := range errs {
		if err != nil {
			outputs[name] = err.Error()
		}
	}
	for name, out := range outputs {
		for _, piece := range secretPieces {
			if strings.Contains(out, piece) {
				t.Errorf("%s: %s leaks %q: %s", what, name, piece, out)
			}
		}
	}
}

// pctEncode percent-encodes every byte outside RFC 3986's unreserved set,
// the encoding libpq's URI parser expects (it does not decode '+').
func pctEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// TestEncodedPasswords checks that a correctly written connection string
// never leaks its password, whatever characters the password holds.
func TestEncodedPasswords(t *testing.T) {
	passwords := []string{"p@ss/w:rd?x=1&y", "spa ce's \\back", "100%pure#hash", "ünï©ødé", "S3cr3tPw9"}
	for _, pw := range passwords {
		quoted := "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(pw) + "'"
		forms := map[string]string{
			"userinfo":     "postgres://alice:" + pctEncode(pw) + "@db:5432/app",
			"userinfo bad": "postgres://alice:" + pctEncode(pw) + "@db:x/app",
			"query":        "postgres://db/app?password=" + pctEncode(pw),
			"query bad":    "postgres://db/app?sslmode=no&password=" + pctEncode(pw),
			"keyword":      "host=db password=" + quoted,
			"keyword bad":  "host=db port=x password=" + quoted,
			"sslpassword":  "host=db sslpassword=" + quoted + " sslmode=bad",
		}
		for form, backend := range forms {
			t.Run(form+"/"+pw, func(t *testing.T) {
				c := Default()
				c.Backend = backend
				out := c.RedactedBackend()
				err := c.Validate()
				if err != nil {
					out += "\n" + err.Error()
				}
				if wantValid := !strings.Contains(form, "bad") && form != "sslpassword"; wantValid != (err == nil) {
					t.Errorf("Validate() = %v, want valid=%v", err, wantValid)
				}
				for _, enc := range []string{pw, pctEncode(pw)} {
					if strings.Contains(out, enc) {
						t.Errorf("leaks %q: %s", enc, out)
					}
				}
			})
		}
	}
}

func TestRedactedBackendKeepsNonSecrets(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no password url", "postgres://alice@db:5432/app?sslmode=require", "postgres://alice@db:5432/app?sslmode=require"},
		{"no password kv", "host=db user=alice", "host=db user=alice"},
		{"at in query value", "postgres://db:5432/app?user=me@corp", "postgres://db:5432/app?user=me@corp"},
		{"empty password", "postgres://alice:@db/app", "postgres://alice:xxxxx@db/app"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Backend: tt.in}
			if got := c.RedactedBackend(); got != tt.want {
				t.Errorf("RedactedBackend() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	c := Default()
	c.Backend = "postgres://alice:" + password + "@db/app"
	c.BackupConninfo = "host=replica password=" + password
	c.ConfigFile = "/etc/pgverbs.yaml"
	c.HTTPToken = password
	want := `listen="127.0.0.1:6432" backend="postgres://alice:xxxxx@db/app" tls_cert="" tls_key="" ` +
		`log_level="info" log_format="console" max_client_conns=1000 shutdown_timeout=30s auth_timeout=1m0s ` +
		`extensions_dir="./extensions" backup_root="" backup_conninfo="host=replica password=xxxxx" ` +
		`extension_collision="server" http_listen="" http_token="xxxxx" http_token_file="" wal_auth_file="" wal_auth_admins="" relay_mode="` + DefaultRelayMode + `" peer_id=0 peers="" config_file="/etc/pgverbs.yaml"`
	if got := c.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

func TestRestartNeeded(t *testing.T) {
	old := Default()
	if got := RestartNeeded(&old, &old); got != nil {
		t.Errorf("RestartNeeded(same, same) = %q, want none", got)
	}
	// Every setting changed; main applies the others on SIGHUP (log level,
	// limits, certificate) or reads them when it needs them (shutdown).
	cur := Config{Listen: ":1", Backend: "host=b", TLSCert: "c", TLSKey: "k", LogLevel: "debug", LogFormat: "json",
		MaxClientConns: 1, ShutdownTimeout: 1, AuthTimeout: 1, ExtensionsDir: "/e", BackupRoot: "/b",
		BackupConninfo: "host=r", ExtensionCollision: "package", HTTPListen: ":2", HTTPToken: "t", HTTPTokenFile: "f", RelayMode: "other"}
	want := []string{"listen", "backend", "log_format", "extensions_dir", "backup_root", "backup_conninfo",
		"extension_collision", "http_listen", "http_token", "http_token_file", "relay_mode"}
	if got := RestartNeeded(&old, &cur); !slices.Equal(got, want) {
		t.Errorf("RestartNeeded = %q, want %q", got, want)
	}
}

func TestZapLevel(t *testing.T) {
	tests := []struct {
		level string
		want  zapcore.Level
	}{
		{"debug", zapcore.DebugLevel},
		{"info", zapcore.InfoLevel},
		{"warn", zapcore.WarnLevel},
		{"error", zapcore.ErrorLevel},
		{"bogus", zapcore.InfoLevel},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			c := Config{LogLevel: tt.level}
			if got := c.ZapLevel(); got != tt.want {
				t.Errorf("ZapLevel() = %v, want %v", got, tt.want)
			}
		})
	}
}

// sameValues compares two configurations' settings, not where they came
// from (TestSources checks that).
func sameValues(a, b Config) bool {
	a.sources, b.sources = nil, nil
	return reflect.DeepEqual(a, b)
}

// TestSources checks that Settings says which layer set each setting:
// the file, then the environment over it, then a flag over both.
func TestSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pgverbs.yaml")
	if err := os.WriteFile(file, []byte("listen: :7000\nlog_level: warn\nbackend: host=db password=s3cret\nauth_timeout:\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := env{"PGVERBS_LOG_LEVEL": "error", "PGVERBS_MAX_CLIENT_CONNS": "9"}
	c, err := Load([]string{"--config", file, "--max-client-conns", "10"}, e.get, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		value  string
		source Source
	}{
		"listen":           {":7000", FromFile},
		"log_level":        {"error", FromEnv},
		"max_client_conns": {"10", FromFlag},
		"backend":          {"host=db password=xxxxx", FromFile},
		"auth_timeout":     {"1m0s", FromDefault}, // null in the file keeps the default
		"relay_mode":       {DefaultRelayMode, FromDefault},
	}
	got := c.Settings()
	if len(got) != len(settings) {
		t.Fatalf("Settings() lists %d settings, want %d", len(got), len(settings))
	}
	for _, s := range got {
		w, ok := want[s.Name]
		if !ok {
			continue
		}
		delete(want, s.Name)
		if s.Value != w.value || s.Source != w.source {
			t.Errorf("%s = %q from %s, want %q from %s", s.Name, s.Value, s.Source, w.value, w.source)
		}
		if s.Description == "" {
			t.Errorf("%s has no description", s.Name)
		}
	}
	for name := range want {
		t.Errorf("Settings() does not list %s", name)
	}
}

// TestHTTPToken checks that /wal/ is never served beyond the loopback
// interface without a token, and that the token, from the setting or its
// file, is never shown.
func TestHTTPToken(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good", password+"\n")
	empty := file("empty", "\n")
	twoLines := file("two", password+"\nmore\n")
	tests := []struct {
		name            string
		listen, tok, tf string
		want            string // "" means valid
		token           string // what Token returns when valid
	}{
		{"no listener", "", "", "", "", ""},
		{"ipv4 loopback", "127.0.0.1:9187", "", "", "", ""},
		{"other 127 address", "127.3.2.1:9187", "", "", "", ""},
		{"ipv6 loopback", "[::1]:9187", "", "", "", ""},
		{"localhost", "localhost:9187", "", "", "", ""},
		{"every interface", ":9187", "", "", `http_token: must be set (or http_token_file) when http_listen ":9187" is not a loopback address`, ""},
		{"any address", "0.0.0.0:9187", "", "", "http_token: must be set", ""},
		{"a host name", "metrics.internal:9187", "", "", "http_token: must be set", ""},
		{"a public address", "10.1.2.3:9187", "", "", "set a token, or bind http_listen to 127.0.0.1", ""},
		{"token", ":9187", password, "", "", password},
		{"token file", ":9187", "", good, "", password},
		{"both", ":9187", password, good, "http_token: set either http_token or http_token_file, not both", ""},
		{"space in token", ":9187", "two words", "", "http_token: the token may hold only visible ASCII", ""},
		{"missing file", ":9187", "", filepath.Join(dir, "none"), "http_token_file: cannot read the token", ""},
		{"empty file", ":9187", "", empty, "http_token_file: " + strconv.Quote(empty) + " is empty", ""},
		{"two lines", ":9187", "", twoLines, "http_token_file: ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.HTTPListen, c.HTTPToken, c.HTTPTokenFile = tt.listen, tt.tok, tt.tf
			err := c.Validate()
			if err != nil && strings.Contains(err.Error(), password) {
				t.Errorf("the error shows the token: %v", err)
			}
			if strings.Contains(c.String(), password) || strings.Contains(fmt.Sprint(c.Settings()), password) {
				t.Errorf("String or Settings shows the token: %s", c.String())
			}
			if tt.want != "" {
				mustContainAll(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatalf("want valid, got %v", err)
			}
			if tok, err := c.Token(); err != nil || tok != tt.token {
				t.Errorf("Token() = %q, %v; want %q", tok, err, tt.token)
			}
		})
	}
}
