package conf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// setting ties one Config field to its names in each layer, so that the
// environment and flag layers cannot drift apart. The YAML layer has its
// own struct (fileConfig) because yaml.v3's KnownFields needs one.
type setting struct {
	key   string // YAML key; also the name Validate reports
	env   string
	flag  string
	arg   string // placeholder shown in usage
	usage string
	field func(*Config) any // *string, *int or *time.Duration
}

var settings = []setting{
	{"listen", "PGVERBS_LISTEN", "listen", "ADDR",
		"host:port to accept client connections on",
		func(c *Config) any { return &c.Listen }},
	{"backend", "PGVERBS_BACKEND", "backend", "CONNINFO",
		"PostgreSQL server to proxy to, as a libpq URL or key=value conninfo",
		func(c *Config) any { return &c.Backend }},
	{"tls_cert", "PGVERBS_TLS_CERT", "tls-cert", "FILE",
		"PEM certificate offered to clients (requires --tls-key)",
		func(c *Config) any { return &c.TLSCert }},
	{"tls_key", "PGVERBS_TLS_KEY", "tls-key", "FILE",
		"PEM private key for --tls-cert",
		func(c *Config) any { return &c.TLSKey }},
	{"log_level", "PGVERBS_LOG_LEVEL", "log-level", "LEVEL",
		"debug, info, warn or error",
		func(c *Config) any { return &c.LogLevel }},
	{"log_format", "PGVERBS_LOG_FORMAT", "log-format", "FORMAT",
		"console or json",
		func(c *Config) any { return &c.LogFormat }},
	{"max_client_conns", "PGVERBS_MAX_CLIENT_CONNS", "max-client-conns", "N",
		"maximum concurrent client connections",
		func(c *Config) any { return &c.MaxClientConns }},
	{"shutdown_timeout", "PGVERBS_SHUTDOWN_TIMEOUT", "shutdown-timeout", "DURATION",
		"how long shutdown waits for sessions to finish; 0 closes them at once",
		func(c *Config) any { return &c.ShutdownTimeout }},
	{"auth_timeout", "PGVERBS_AUTH_TIMEOUT", "auth-timeout", "DURATION",
		"time a client has to complete startup and authentication",
		func(c *Config) any { return &c.AuthTimeout }},
	{"extensions_dir", "PGVERBS_EXTENSIONS_DIR", "extensions", "DIR",
		"directory holding extension packages",
		func(c *Config) any { return &c.ExtensionsDir }},
	{"backup_root", "PGVERBS_BACKUP_ROOT", "backup-root", "DIR",
		"directory backups are written under; empty disables backups",
		func(c *Config) any { return &c.BackupRoot }},
	{"backup_conninfo", "PGVERBS_BACKUP_CONNINFO", "backup-conninfo", "CONNINFO",
		"conninfo for BASE BACKUP's own connections (default: the backend's)",
		func(c *Config) any { return &c.BackupConninfo }},
	{"extension_collision", "PGVERBS_EXTENSION_COLLISION", "extension-collision", "server|package",
		"which wins when a package has the name of a server extension",
		func(c *Config) any { return &c.ExtensionCollision }},
	{"relay_mode", "PGVERBS_RELAY_MODE", "relay-mode", "loop|goroutines",
		"how sessions are relayed after authentication (TLS sessions always use goroutines)",
		func(c *Config) any { return &c.RelayMode }},
}

const (
	configFlag = "config"
	configEnv  = "PGVERBS_CONFIG"
)

// Load builds the configuration from args (without the program name), the
// environment (getenv, usually os.Getenv; nil means os.Getenv) and the YAML
// file they name, then validates it. Later layers win: defaults < file <
// environment < flags.
//
// Usage and flag errors are printed to usage (nil discards them); -h or
// --help returns flag.ErrHelp. Every problem found in the environment and
// in validation is reported together; flag and file errors stop Load at
// once because the layers after them would be built on a guess. On error
// the returned Config is nil.
//
// A relative backup_root is made absolute against the working directory.
func Load(args []string, getenv func(string) string, usage io.Writer) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if usage == nil {
		usage = io.Discard
	}

	// Flags are parsed first, because one of them names the file, but into
	// a separate Config: they are applied last, and only those given.
	fromFlags := Default()
	fs, configPath := newFlagSet(&fromFlags, usage)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		// The argument itself is not echoed: a stray word is most often
		// the tail of an unquoted value, possibly a password.
		return nil, fmt.Errorf("unexpected argument at position %d: pgverbs takes only flags (quote values that contain spaces)",
			len(args)-fs.NArg()+1)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	cfg := Default()
	path := getenv(configEnv)
	if given[configFlag] {
		// Even an explicit --config "" wins, to let a command line opt out
		// of a file the environment names.
		path = *configPath
	}
	if path != "" {
		if err := loadFile(path, &cfg); err != nil {
			return nil, err
		}
		cfg.ConfigFile = path
	}

	errs := []error{applyEnv(&cfg, getenv)}
	for _, s := range settings {
		if given[s.flag] {
			copyField(s.field(&cfg), s.field(&fromFlags))
		}
	}

	if cfg.BackupRoot != "" && !filepath.IsAbs(cfg.BackupRoot) {
		abs, err := filepath.Abs(cfg.BackupRoot)
		if err != nil {
			errs = append(errs, fmt.Errorf("backup_root: cannot make %q absolute: %v", cfg.BackupRoot, err))
		} else {
			cfg.BackupRoot = abs
		}
	}

	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// newFlagSet defines every flag on a private FlagSet, so that Load neither
// touches flag.CommandLine nor exits the process on bad input.
func newFlagSet(into *Config, usage io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("pgverbs", flag.ContinueOnError)
	fs.SetOutput(usage)
	configPath := fs.String(configFlag, "", "YAML configuration file")
	for _, s := range settings {
		fs.Var(fieldValue{s.field(into)}, s.flag, s.usage)
	}
	fs.Usage = func() { printUsage(fs.Output()) }
	return fs, configPath
}

// printUsage writes its own listing instead of FlagSet.PrintDefaults so
// that flags appear with the documented double dash, in a meaningful
// order, and with the environment variable that sets each one.
func printUsage(w io.Writer) {
	var b bytes.Buffer
	b.WriteString("Usage: pgverbs [flags]\n\n" +
		"Settings come from built-in defaults, then the YAML file named by --config\n" +
		"or " + configEnv + ", then PGVERBS_* environment variables, then flags; later\n" +
		"sources win. Both --flag value and --flag=value are accepted. Durations use\n" +
		"Go syntax, such as 30s or 2m.\n\nFlags:\n")
	fmt.Fprintf(&b, "  --%s FILE\n    \tYAML configuration file (env %s)\n", configFlag, configEnv)
	def := Default()
	for _, s := range settings {
		fmt.Fprintf(&b, "  --%s %s\n    \t%s (", s.flag, s.arg, s.usage)
		switch v := s.field(&def).(type) {
		case *string:
			if *v != "" {
				fmt.Fprintf(&b, "default %q, ", *v)
			}
		default:
			fmt.Fprintf(&b, "default %s, ", fieldValue{v})
		}
		fmt.Fprintf(&b, "env %s, yaml %s)\n", s.env, s.key)
	}
	_, _ = w.Write(b.Bytes())
}

// fieldValue adapts a Config field to flag.Value, sharing parseInto with
// the environment layer so both accept and reject the same strings.
type fieldValue struct{ p any }

func (v fieldValue) String() string {
	switch p := v.p.(type) {
	case *string:
		return *p
	case *int:
		return strconv.Itoa(*p)
	case *time.Duration:
		return p.String()
	}
	// flag may call String on a zero fieldValue.
	return ""
}

func (v fieldValue) Set(s string) error { return parseInto(v.p, s) }

// parseInto sets the field p points to from s. Its errors do not repeat s:
// callers decide whether the value is safe to show.
func parseInto(p any, s string) error {
	switch p := p.(type) {
	case *string:
		*p = s
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("not an integer")
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New(`not a duration such as "30s" or "2m"`)
		}
		*p = d
	default:
		panic(fmt.Sprintf("conf: unsupported field type %T", p))
	}
	return nil
}

func copyField(dst, src any) {
	switch dst := dst.(type) {
	case *string:
		*dst = *src.(*string)
	case *int:
		*dst = *src.(*int)
	case *time.Duration:
		*dst = *src.(*time.Duration)
	default:
		panic(fmt.Sprintf("conf: unsupported field type %T", dst))
	}
}

// applyEnv overlays every non-empty PGVERBS_* variable. An empty variable
// counts as unset, since getenv cannot tell the two apart.
func applyEnv(cfg *Config, getenv func(string) string) error {
	var errs []error
	for _, s := range settings {
		v := getenv(s.env)
		if v == "" {
			continue
		}
		if err := parseInto(s.field(cfg), v); err != nil {
			// Only numeric and duration settings can fail to parse, so
			// quoting the value cannot expose the backend password.
			errs = append(errs, fmt.Errorf("%s: invalid value %q: %v", s.env, v, err))
		}
	}
	return errors.Join(errs...)
}

// fileConfig is the YAML layer. Load seeds it from the defaults because
// yaml.v3 leaves a field alone when its key is absent or null (listen:),
// so both keep the default; an explicit "" clears a string.
type fileConfig struct {
	Listen          string       `yaml:"listen"`
	Backend         string       `yaml:"backend"`
	TLSCert         string       `yaml:"tls_cert"`
	TLSKey          string       `yaml:"tls_key"`
	LogLevel        string       `yaml:"log_level"`
	LogFormat       string       `yaml:"log_format"`
	MaxClientConns  int          `yaml:"max_client_conns"`
	ShutdownTimeout yamlDuration `yaml:"shutdown_timeout"`
	AuthTimeout     yamlDuration `yaml:"auth_timeout"`
	ExtensionsDir   string       `yaml:"extensions_dir"`
	BackupRoot      string       `yaml:"backup_root"`
	BackupConninfo  string       `yaml:"backup_conninfo"`
	// ExtensionCollision is "server" or "package".
	ExtensionCollision string `yaml:"extension_collision"`
	// RelayMode is "loop" or "goroutines".
	RelayMode string `yaml:"relay_mode"`
}

// yamlDuration accepts only Go duration strings. yaml.v3 would otherwise
// reject "30" with a message about time.Duration that does not mention the
// missing unit.
type yamlDuration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler. It returns a *yaml.TypeError
// so that the decoder keeps going and reports the other problems too.
func (d *yamlDuration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf(`line %d: a duration must be a string such as "30s" or "2m"`, n.Line)}}
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{
			fmt.Sprintf(`line %d: invalid duration %q (use Go syntax such as "30s" or "2m")`, n.Line, n.Value)}}
	}
	*d = yamlDuration(v)
	return nil
}

var unknownFieldMsg = regexp.MustCompile(`^line (\d+): field (.*) not found in type \S+$`)

func loadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	fc := fileConfig{
		Listen:             cfg.Listen,
		Backend:            cfg.Backend,
		TLSCert:            cfg.TLSCert,
		TLSKey:             cfg.TLSKey,
		LogLevel:           cfg.LogLevel,
		LogFormat:          cfg.LogFormat,
		MaxClientConns:     cfg.MaxClientConns,
		ShutdownTimeout:    yamlDuration(cfg.ShutdownTimeout),
		AuthTimeout:        yamlDuration(cfg.AuthTimeout),
		ExtensionsDir:      cfg.ExtensionsDir,
		BackupRoot:         cfg.BackupRoot,
		BackupConninfo:     cfg.BackupConninfo,
		ExtensionCollision: cfg.ExtensionCollision,
		RelayMode:          cfg.RelayMode,
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// A misspelt key would otherwise be ignored and its setting silently
	// left at the default.
	dec.KnownFields(true)
	err = dec.Decode(&fc)
	switch {
	case errors.Is(err, io.EOF):
		// An empty file (or only comments) sets nothing.
		return nil
	case err != nil:
		return fileError(path, err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %q: holds more than one YAML document", path)
	}

	cfg.Listen = fc.Listen
	cfg.Backend = fc.Backend
	cfg.TLSCert = fc.TLSCert
	cfg.TLSKey = fc.TLSKey
	cfg.LogLevel = fc.LogLevel
	cfg.LogFormat = fc.LogFormat
	cfg.MaxClientConns = fc.MaxClientConns
	cfg.ShutdownTimeout = time.Duration(fc.ShutdownTimeout)
	cfg.AuthTimeout = time.Duration(fc.AuthTimeout)
	cfg.ExtensionsDir = fc.ExtensionsDir
	cfg.BackupRoot = fc.BackupRoot
	cfg.BackupConninfo = fc.BackupConninfo
	cfg.ExtensionCollision = fc.ExtensionCollision
	cfg.RelayMode = fc.RelayMode
	return nil
}

// fileError reports each YAML type problem on its own line, rewording
// yaml.v3's unknown-field message, which names an internal Go type, into
// the key and line an operator needs.
func fileError(path string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("config file %q: %w", path, err)
	}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		if m := unknownFieldMsg.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("line %s: unknown key %q", m[1], m[2])
		}
		errs = append(errs, fmt.Errorf("config file %q: %s", path, msg))
	}
	return errors.Join(errs...)
}
