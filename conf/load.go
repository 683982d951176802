package conf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	configFlag = "config"
	configEnv  = envPrefix + "CONFIG"
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
			cfg.setSource(s.key, FromFlag)
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
		"Go syntax, such as 30s or 2m.\n\n" +
		"Object-storage targets (the storage: map, named in SQL as storage://NAME/path)\n" +
		"are set only in the config file: no flag or environment variable sets them.\n" +
		"Their credentials are never in the file: each target's credentials_file, or\n" +
		"the AWS SDK's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws).\n\nFlags:\n")
	fmt.Fprintf(&b, "  --%s FILE\n    \tYAML configuration file (env %s)\n", configFlag, configEnv)
	def := Default()
	for _, s := range settings {
		fmt.Fprintf(&b, "  --%s %s\n    \t%s (", s.flag, s.arg, s.usage)
		switch v := s.field(&def).(type) {
		case *string:
			if *v != "" {
				fmt.Fprintf(&b, "default %q, ", *v)
			}
		case *Peers:
			// None by default.
		default:
			fmt.Fprintf(&b, "default %s, ", fieldValue{v})
		}
		fmt.Fprintf(&b, "env %s, yaml %s)\n", s.env(), s.key)
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
	case *Peers:
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
	case *Peers:
		v, err := ParsePeers(s)
		if err != nil {
			return err
		}
		*p = v
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
	case *Peers:
		*dst = *src.(*Peers)
	default:
		panic(fmt.Sprintf("conf: unsupported field type %T", dst))
	}
}

// applyEnv overlays every non-empty PGVERBS_* variable. An empty variable
// counts as unset, since getenv cannot tell the two apart.
func applyEnv(cfg *Config, getenv func(string) string) error {
	var errs []error
	if getenv(envPrefix+"STORAGE") != "" {
		// Said rather than ignored: the operator meant to configure
		// something, and the value (a map) has nowhere to go.
		errs = append(errs, fmt.Errorf("%sSTORAGE: storage targets are set only in the config file", envPrefix))
	}
	for _, s := range settings {
		v := getenv(s.env())
		if v == "" {
			continue
		}
		cfg.setSource(s.key, FromEnv)
		if err := parseInto(s.field(cfg), v); err != nil {
			// Only numeric, duration and peers settings can fail to
			// parse, so quoting the value cannot expose the backend
			// password.
			errs = append(errs, fmt.Errorf("%s: invalid value %q: %v", s.env(), v, err))
		}
	}
	return errors.Join(errs...)
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

// loadFile overlays the settings the YAML file at path gives onto cfg. A
// key that is absent or null (listen:) keeps the value cfg holds; an
// explicit "" clears a string. Every problem in the file is reported, each
// with its line; a syntax error stops at once.
func loadFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err = dec.Decode(&doc)
	switch {
	case errors.Is(err, io.EOF):
		// An empty file (or only comments) sets nothing.
		return nil
	case err != nil:
		return fmt.Errorf("config file %q: %w", path, err)
	}
	var errs []error
	for _, msg := range decodeSettings(doc.Content[0], cfg) {
		errs = append(errs, fmt.Errorf("config file %q: %s", path, msg))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %q: holds more than one YAML document", path)
	}
	return nil
}

// decodeSettings sets cfg from the top-level mapping n, looking each key up
// in the settings table: the file accepts exactly the keys the table lists,
// and a misspelt key is an error rather than a setting silently left at its
// default. It returns one message per problem, in file order.
func decodeSettings(n *yaml.Node, cfg *Config) []string {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		// A document that is only "~" sets nothing, like an empty file.
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return []string{fmt.Sprintf("line %d: the file must be a mapping of keys to values, not %s", n.Line, n.ShortTag())}
	}
	var problems []string
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		s, known := settingFor(k.Value)
		isStorage := k.Kind == yaml.ScalarNode && k.Value == storageKey
		if k.Kind != yaml.ScalarNode || !known && !isStorage {
			// Also YAML's merge key "<<": no setting's value but storage's
			// is a mapping, and merging targets in would hide which key
			// came from where.
			problems = append(problems, fmt.Sprintf("line %d: unknown key %q", k.Line, k.Value))
			continue
		}
		if line, dup := firstLine[k.Value]; dup {
			problems = append(problems, fmt.Sprintf("line %d: mapping key %q already defined at line %d", k.Line, k.Value, line))
			continue
		}
		firstLine[k.Value] = k.Line
		if isStorage {
			// Sources are noted per target field, as Settings lists them.
			problems = append(problems, decodeStorage(v, cfg)...)
			continue
		}
		if v.ShortTag() != "!!null" {
			cfg.setSource(s.key, FromFile)
		}
		problems = append(problems, decodeValue(v, s.field(cfg))...)
	}
	return problems
}

// decodeValue sets the field p points to from v with yaml.v3's own
// conversions, so that a value reads as it would into a struct field: a
// null leaves the field alone, 1000 is an int, and a sequence is no string.
func decodeValue(v *yaml.Node, p any) []string {
	if d, ok := p.(*time.Duration); ok {
		p = (*yamlDuration)(d)
	}
	err := v.Decode(p)
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te):
		return te.Errors
	case err != nil:
		return []string{fmt.Sprintf("line %d: %v", v.Line, err)}
	}
	return nil
}
