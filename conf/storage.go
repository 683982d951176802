package conf

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// storageKey is the YAML key of the object-storage targets. It is not a
// row of the settings table: its value is a map, which no flag or
// environment variable can carry, so only the file sets it.
const storageKey = "storage"

// StorageTarget is a named S3-compatible object store that base backups
// and the WAL archive can be written to. SQL names one as
// 'storage://NAME/path'; its connection details live only in the config
// file, and its credentials in neither SQL nor the config file.
type StorageTarget struct {
	// Name is the target's key under storage: in the file, the NAME of
	// storage://NAME/... URLs.
	Name string
	// Endpoint is the store's base URL, http:// or https:// with a host
	// and optional port and nothing else (for AWS,
	// https://s3.REGION.amazonaws.com).
	Endpoint string
	// Region is the signing region, us-east-1 by default; self-hosted
	// stores mostly accept any.
	Region string
	// Bucket is the bucket objects are written to.
	Bucket string
	// Prefix is prepended, with a '/', to every object key; "" for none.
	// Load strips leading and trailing slashes.
	Prefix string
	// PathStyle addresses the bucket as ENDPOINT/BUCKET rather than
	// BUCKET.ENDPOINT. It defaults to true because self-hosted stores
	// (MinIO, Ceph, Garage) rarely have wildcard DNS for virtual hosts.
	PathStyle bool
	// CAFile is a PEM bundle trusted for an https endpoint instead of the
	// system roots; "" uses the system roots.
	CAFile string
	// SSE is the server-side encryption requested for every object: "",
	// "AES256" or "aws:kms".
	SSE string
	// SSEKMSKeyID is the KMS key for SSE aws:kms; "" lets the store use
	// its default key.
	SSEKMSKeyID string
	// CredentialsFile is an AWS shared-credentials file (INI) to read the
	// access key from; "" uses the SDK's usual chain
	// (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then ~/.aws/credentials).
	// Load refuses a file others may read, like wal_auth_file.
	CredentialsFile string
	// Profile is the section of CredentialsFile to use; "" means
	// "default".
	Profile string
	// PartSize is the size in bytes of each part of a multipart upload.
	PartSize int64
	// ParallelParts is how many parts of one object are uploaded at once.
	ParallelParts int
}

// Defaults and limits of a storage target. The part limits are S3's own:
// no part but the last may be smaller than 5 MiB or any larger than 5 GiB.
const (
	DefaultStorageRegion        = "us-east-1"
	DefaultStoragePartSize      = 8 << 20
	DefaultStorageParallelParts = 3
	MinStoragePartSize          = 5 << 20
	MaxStoragePartSize          = 5 << 30
	MaxStorageParallelParts     = 64
)

// DefaultStorageTarget returns the target name with every optional field
// at its default, as Load starts each target the file gives.
func DefaultStorageTarget(name string) StorageTarget {
	return StorageTarget{
		Name:          name,
		Region:        DefaultStorageRegion,
		PathStyle:     true,
		PartSize:      DefaultStoragePartSize,
		ParallelParts: DefaultStorageParallelParts,
	}
}

// StorageNames returns the names of the configured storage targets,
// sorted, for hints in errors about an unknown storage:// target.
func (c *Config) StorageNames() []string {
	return slices.Sorted(maps.Keys(c.Storage))
}

// storageName is what a target may be called: it is the host part of a
// storage:// URL, so no dots, no upper case, nothing to escape.
var storageName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// targetField is one key of a storage target, read by the file decoder,
// Validate, String and Settings alike.
type targetField struct {
	key   string
	usage string
	field func(*StorageTarget) any // *string, *bool, *int or *byteSize
	check func(*StorageTarget) error
	// optional fields are listed only when set; the others always have a
	// value, their default if nothing else.
	optional bool
}

var targetFields = []targetField{{
	key:   "endpoint",
	usage: "object store base URL (http or https, no path)",
	field: func(t *StorageTarget) any { return &t.Endpoint },
	check: func(t *StorageTarget) error { return validateEndpoint(t.Endpoint) },
}, {
	key:   "region",
	usage: "signing region",
	field: func(t *StorageTarget) any { return &t.Region },
	check: func(t *StorageTarget) error { return validateRegion(t.Region) },
}, {
	key:   "bucket",
	usage: "bucket objects are written to",
	field: func(t *StorageTarget) any { return &t.Bucket },
	check: func(t *StorageTarget) error { return validateBucket(t.Bucket) },
}, {
	key:      "prefix",
	usage:    "prefix of every object key",
	field:    func(t *StorageTarget) any { return &t.Prefix },
	check:    func(t *StorageTarget) error { return validatePrefix(t.Prefix) },
	optional: true,
}, {
	key:   "path_style",
	usage: "address the bucket as ENDPOINT/BUCKET (true) or BUCKET.ENDPOINT (false)",
	field: func(t *StorageTarget) any { return &t.PathStyle },
}, {
	key:   "ca_file",
	usage: "PEM bundle trusted for the endpoint instead of the system roots",
	field: func(t *StorageTarget) any { return &t.CAFile },
	check: func(t *StorageTarget) error {
		if t.CAFile == "" {
			return nil
		}
		return checkCAFile(t.CAFile)
	},
	optional: true,
}, {
	key:      "sse",
	usage:    "server-side encryption: AES256 or aws:kms",
	field:    func(t *StorageTarget) any { return &t.SSE },
	check:    func(t *StorageTarget) error { return oneOf(t.SSE, "", "AES256", "aws:kms") },
	optional: true,
}, {
	key:   "sse_kms_key_id",
	usage: "KMS key for sse aws:kms",
	field: func(t *StorageTarget) any { return &t.SSEKMSKeyID },
	check: func(t *StorageTarget) error {
		return errorIf(t.SSEKMSKeyID != "" && t.SSE != "aws:kms", "needs sse aws:kms")
	},
	optional: true,
}, {
	key:   "credentials_file",
	usage: "AWS shared-credentials file (default: the AWS SDK's usual chain)",
	field: func(t *StorageTarget) any { return &t.CredentialsFile },
	check: func(t *StorageTarget) error {
		if t.CredentialsFile == "" {
			return nil
		}
		return checkCredentialsFile(t.CredentialsFile, t.Profile)
	},
	optional: true,
}, {
	key:   "profile",
	usage: "profile of credentials_file (default: default)",
	field: func(t *StorageTarget) any { return &t.Profile },
	check: func(t *StorageTarget) error {
		if t.Profile == "" {
			return nil
		}
		if t.CredentialsFile == "" {
			return errors.New("needs credentials_file")
		}
		return errorIf(!validProfile(t.Profile), "%q is not a profile name (visible characters, no brackets)", t.Profile)
	},
	optional: true,
}, {
	key:   "part_size",
	usage: "size of each multipart upload part (5MB to 5GB)",
	field: func(t *StorageTarget) any { return (*byteSize)(&t.PartSize) },
	check: func(t *StorageTarget) error {
		return errorIf(t.PartSize < MinStoragePartSize || t.PartSize > MaxStoragePartSize,
			"%s is not from 5MB to 5GB (S3's limits on a part)", byteSize(t.PartSize))
	},
}, {
	key:   "parallel_parts",
	usage: "parts of one object uploaded at once",
	field: func(t *StorageTarget) any { return &t.ParallelParts },
	check: func(t *StorageTarget) error {
		return errorIf(t.ParallelParts < 1 || t.ParallelParts > MaxStorageParallelParts,
			"%d is not from 1 to %d", t.ParallelParts, MaxStorageParallelParts)
	},
}}

// targetText is a target field's value as text.
func targetText(p any) string {
	switch p := p.(type) {
	case *string:
		return *p
	case *bool:
		return strconv.FormatBool(*p)
	case *int:
		return strconv.Itoa(*p)
	case *byteSize:
		return p.String()
	}
	panic(fmt.Sprintf("conf: unsupported storage field type %T", p))
}

// storageRow is one field of one target as String and Settings show it.
type storageRow struct {
	key, value, usage string
	quote             bool
}

// storageRows lists every target's fields that are set, targets sorted by
// name and fields in table order.
func (c *Config) storageRows() []storageRow {
	var rows []storageRow
	for _, name := range c.StorageNames() {
		t := c.Storage[name]
		for _, f := range targetFields {
			p := f.field(&t)
			v := targetText(p)
			if f.optional && v == "" {
				continue
			}
			_, quote := p.(*string)
			rows = append(rows, storageRow{key: storageKey + "." + name + "." + f.key, value: v, usage: f.usage, quote: quote})
		}
	}
	return rows
}

// validateStorage checks every target, reporting each bad field under its
// full key (storage.NAME.FIELD).
func (c *Config) validateStorage() []error {
	var errs []error
	for _, name := range c.StorageNames() {
		t := c.Storage[name]
		if !storageName.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: target name %q must be a lowercase letter then up to 62 lowercase letters, digits, '_' or '-'", storageKey, name))
			continue
		}
		if t.Name != name {
			errs = append(errs, fmt.Errorf("%s.%s: Name is %q, not its key", storageKey, name, t.Name))
		}
		for _, f := range targetFields {
			if f.check == nil {
				continue
			}
			if err := f.check(&t); err != nil {
				errs = append(errs, fmt.Errorf("%s.%s.%s: %v", storageKey, name, f.key, err))
			}
		}
	}
	return errs
}

// validateEndpoint accepts scheme://host[:port] only. Userinfo is refused
// and never echoed: credentials must not live in the config file.
func validateEndpoint(s string) error {
	if s == "" {
		return errors.New("must be set")
	}
	if strings.Contains(s, "@") {
		return errors.New("must not hold credentials (user:password@); use credentials_file or the AWS environment variables")
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || strings.HasSuffix(s, "#") {
		return fmt.Errorf("%q must be scheme://host[:port] only, with no path, query or fragment (the bucket and prefix are separate keys)", s)
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q in %q is not a number from 1 to 65535", port, s)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("%q has an empty port", s)
	}
	return nil
}

var regionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validateRegion accepts AWS's region names and the looser ones
// self-hosted stores use ("garage", "default"); a region is signed into
// every request, so it must be a plain token.
func validateRegion(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	return errorIf(!regionName.MatchString(s), "%q is not a region name (letters, digits, '.', '_', '-')", s)
}

var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// validateBucket applies S3's general-purpose bucket naming rules, which
// self-hosted stores follow too.
func validateBucket(s string) error {
	if s == "" {
		return errors.New("must be set")
	}
	const rules = "3 to 63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit"
	switch {
	case !bucketName.MatchString(s):
		return fmt.Errorf("%q is not a bucket name: %s", s, rules)
	case strings.Contains(s, ".."):
		return fmt.Errorf("%q is not a bucket name: two adjacent periods", s)
	case net.ParseIP(s) != nil:
		return fmt.Errorf("%q is not a bucket name: it is formatted as an IP address", s)
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(s, p) {
			return fmt.Errorf("%q is not a bucket name: the prefix %q is reserved", s, p)
		}
	}
	for _, sfx := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3"} {
		if strings.HasSuffix(s, sfx) {
			return fmt.Errorf("%q is not a bucket name: the suffix %q is reserved", s, sfx)
		}
	}
	return nil
}

// maxPrefix leaves most of S3's 1024-byte key limit to the object names
// backups and the archive put under the prefix.
const maxPrefix = 512

// validatePrefix refuses what would make object keys ambiguous or unsafe
// for stores that map keys to files: empty, "." and ".." segments, control
// characters (NUL among them) and invalid UTF-8.
func validatePrefix(s string) error {
	if s == "" {
		return nil
	}
	switch {
	case len(s) > maxPrefix:
		return fmt.Errorf("is longer than %d bytes", maxPrefix)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	case strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Errorf("%q holds a control character", s)
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/"):
		return fmt.Errorf("%q must not start or end with '/'", s)
	}
	for seg := range strings.SplitSeq(s, "/") {
		switch seg {
		case "":
			return fmt.Errorf("%q has an empty segment (\"//\")", s)
		case ".", "..":
			return fmt.Errorf("%q has a %q segment", s, seg)
		}
	}
	return nil
}

// normalizePrefix is what Load keeps of a prefix: the same key prefix
// however its slashes were written.
func normalizePrefix(s string) string { return strings.Trim(s, "/") }

// checkCAFile reads the bundle now, so that a typo fails at startup and
// not at the first upload: every PEM block must be a certificate that
// parses, and there must be at least one.
func checkCAFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read the CA bundle: %v", err)
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("%q holds a %s block; a CA bundle holds only certificates", path, b.Type)
		}
		n++
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("%q: certificate %d: %v", path, n, err)
		}
	}
	return errorIf(n == 0, "%q holds no PEM certificate", path)
}

// maxCredentialsFile bounds what is read of a credentials file: a few
// lines per profile.
const maxCredentialsFile = 1 << 20

// checkCredentialsFile checks that the file is a regular file only its
// owner can read (see checkSecretFilePermissions), that it reads, and
// that profile (default "default") has a section in it. Its errors name
// the file and line numbers, never the content.
func checkCredentialsFile(path, profile string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read the credentials: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read the credentials: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file", path)
	}
	if runtime.GOOS != "windows" {
		if err := checkSecretFilePermissions(path, fi); err != nil {
			return err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return fmt.Errorf("cannot read the credentials: %v", err)
	}
	if len(data) > maxCredentialsFile {
		return fmt.Errorf("%q is larger than %d KiB", path, maxCredentialsFile>>10)
	}
	if profile == "" {
		// The SDK may also take the profile from AWS_PROFILE, and the keys
		// from the environment, so a missing [default] is not an error.
		return nil
	}
	sections, err := iniSections(data)
	if err != nil {
		return fmt.Errorf("%q: %v", path, err)
	}
	return errorIf(!slices.Contains(sections, profile), "%q has no [%s] profile", path, profile)
}

// iniSections returns the [section] names of an AWS shared-credentials
// file. A malformed header is reported by line only.
func iniSections(data []byte) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxCredentialsFile+1)
	for line := 1; sc.Scan(); line++ {
		l := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(l, "[") {
			continue
		}
		name, ok := strings.CutSuffix(l, "]")
		if !ok {
			return nil, fmt.Errorf("line %d: a section header without its closing ']'", line)
		}
		names = append(names, strings.TrimSpace(name[1:]))
	}
	return names, sc.Err()
}

// validProfile accepts what can stand between the brackets of a section
// header.
func validProfile(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' || s[i] == '[' || s[i] == ']' {
			return false
		}
	}
	return true
}

// checkSecretFilePermissions is internal/localauth's rule for
// wal_auth_file, applied to other files holding secrets: no group or other
// access, except that a root-owned file may be group-readable (0640),
// which is how packages and Kubernetes' fsGroup share a secret with a
// service.
func checkSecretFilePermissions(path string, fi os.FileInfo) error {
	perm := fi.Mode().Perm()
	allowed := os.FileMode(0o600)
	if ownedByRoot(fi) {
		allowed = 0o640
	}
	if perm&^allowed == 0 {
		return nil
	}
	return fmt.Errorf("%q has permissions %04o: it must be u=rw (0600) or less, "+
		"or u=rw,g=r (0640) or less if owned by root", path, perm)
}

// byteSize is a size in bytes that the file may give as an integer or,
// like PostgreSQL's memory settings, as a string with a unit.
type byteSize int64

// sizeUnits are PostgreSQL's memory units, 1024-based and case-sensitive,
// largest first for String.
var sizeUnits = []struct {
	name string
	mult int64
}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}

// String shows the size in the largest unit that divides it exactly, so
// that it reads as it was most likely written and parses back.
func (s byteSize) String() string {
	if s == 0 {
		return "0"
	}
	for _, u := range sizeUnits {
		if int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// parseSize reads "8MB", "8 MB", "5242880" or "5242880B".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size such as \"8MB\" (a whole number and B, kB, MB, GB or TB)", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	unit := strings.TrimSpace(s[i:])
	if unit == "" {
		return n, nil
	}
	for _, u := range sizeUnits {
		if u.name == unit {
			if n > math.MaxInt64/u.mult {
				return 0, fmt.Errorf("%q is too large", s)
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("%q has unit %q, not one of B, kB, MB, GB, TB (case matters, as in PostgreSQL)", s, unit)
}

// UnmarshalYAML implements yaml.Unmarshaler, returning a *yaml.TypeError
// so that the decoder reports the other problems too.
func (s *byteSize) UnmarshalYAML(n *yaml.Node) error {
	fail := func(msg string) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
	}
	if n.Kind != yaml.ScalarNode {
		return fail(`a size must be a number of bytes or a string such as "8MB"`)
	}
	switch n.ShortTag() {
	case "!!int":
		var v int64
		if err := n.Decode(&v); err != nil {
			return fail(fmt.Sprintf("%q is not a number of bytes", n.Value))
		}
		*s = byteSize(v)
	case "!!str":
		v, err := parseSize(n.Value)
		if err != nil {
			return fail(err.Error())
		}
		*s = byteSize(v)
	default:
		return fail(fmt.Sprintf(`%q is not a size: give a whole number of bytes or a string such as "8MB"`, n.Value))
	}
	return nil
}

// decodeStorage sets cfg.Storage from the mapping of target names v. Like
// the top level it is strict: an unknown key inside a target is an error
// naming the target and the key.
func decodeStorage(v *yaml.Node, cfg *Config) []string {
	v = resolveAlias(v)
	if v.ShortTag() == "!!null" {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return []string{fmt.Sprintf("line %d: %s must be a mapping of target names to targets, not %s", v.Line, storageKey, v.ShortTag())}
	}
	var problems []string
	firstLine := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, tv := v.Content[i], resolveAlias(v.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			problems = append(problems, fmt.Sprintf("line %d: %s: a target name must be a plain string", k.Line, storageKey))
			continue
		}
		name := k.Value
		if line, dup := firstLine[name]; dup {
			problems = append(problems, fmt.Sprintf("line %d: %s: target %q already defined at line %d", k.Line, storageKey, name, line))
			continue
		}
		firstLine[name] = k.Line
		if !storageName.MatchString(name) {
			problems = append(problems, fmt.Sprintf("line %d: %s: target name %q must be a lowercase letter then up to 62 lowercase letters, digits, '_' or '-' (it is the host of storage:// URLs)",
				k.Line, storageKey, name))
			continue
		}
		t := DefaultStorageTarget(name)
		problems = append(problems, decodeTarget(tv, &t, cfg)...)
		if cfg.Storage == nil {
			cfg.Storage = map[string]StorageTarget{}
		}
		cfg.Storage[name] = t
	}
	return problems
}

// decodeTarget sets t from the mapping v, one key at a time.
func decodeTarget(v *yaml.Node, t *StorageTarget, cfg *Config) []string {
	prefix := storageKey + "." + t.Name
	if v.ShortTag() == "!!null" {
		// "offsite:" alone: Validate reports the required keys missing.
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return []string{fmt.Sprintf("line %d: %s must be a mapping of keys to values, not %s", v.Line, prefix, v.ShortTag())}
	}
	var problems []string
	firstLine := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, fv := v.Content[i], v.Content[i+1]
		j := slices.IndexFunc(targetFields, func(f targetField) bool { return f.key == k.Value })
		if k.Kind != yaml.ScalarNode || j < 0 {
			problems = append(problems, fmt.Sprintf("line %d: %s: unknown key %q", k.Line, prefix, k.Value))
			continue
		}
		if line, dup := firstLine[k.Value]; dup {
			problems = append(problems, fmt.Sprintf("line %d: %s: key %q already defined at line %d", k.Line, prefix, k.Value, line))
			continue
		}
		firstLine[k.Value] = k.Line
		key := prefix + "." + k.Value
		if fv.ShortTag() != "!!null" {
			cfg.setSource(key, FromFile)
		}
		for _, msg := range decodeValue(fv, targetFields[j].field(t)) {
			// yaml.v3's messages name the Go type, not the key.
			if rest, ok := strings.CutPrefix(msg, fmt.Sprintf("line %d: ", fv.Line)); ok {
				msg = fmt.Sprintf("line %d: %s: %s", fv.Line, key, rest)
			} else {
				msg = key + ": " + msg
			}
			problems = append(problems, msg)
		}
	}
	t.Prefix = normalizePrefix(t.Prefix)
	return problems
}

// resolveAlias follows *anchor references, which yaml.Node leaves as they
// were written.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}
