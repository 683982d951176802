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
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// storageFiles writes a CA bundle and a credentials file (0600) for the
// storage tests, returning their paths.
func storageFiles(t *testing.T) (ca, creds string) {
	t.Helper()
	dir := t.TempDir()
	ca, _ = pgtest.WriteSelfSigned(t, dir, "s3")
	creds = filepath.Join(dir, "credentials")
	content := "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = " + password + "\n\n[backup]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = " + password + "\n"
	if err := os.WriteFile(creds, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, creds
}

func loadYAML(t *testing.T, yaml string) (*Config, error) {
	t.Helper()
	return Load([]string{"--config", writeFile(t, "pgverbs.yaml", yaml)}, env{}.get, nil)
}

func TestStorageValid(t *testing.T) {
	ca, creds := storageFiles(t)
	c, err := loadYAML(t, `
storage:
  offsite:
    endpoint: https://s3.example.com
    region: eu-west-1
    bucket: pg-backups
    prefix: /prod/db1/
    path_style: false
    ca_file: `+ca+`
    sse: aws:kms
    sse_kms_key_id: arn:aws:kms:eu-west-1:111122223333:key/abcd
    credentials_file: `+creds+`
    profile: backup
    part_size: 16MB
    parallel_parts: 8
  local:
    endpoint: http://127.0.0.1:9000
    bucket: wal
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]StorageTarget{
		"offsite": {Name: "offsite", Endpoint: "https://s3.example.com", Region: "eu-west-1", Bucket: "pg-backups",
			Prefix: "prod/db1", PathStyle: false, CAFile: ca, SSE: "aws:kms",
			SSEKMSKeyID: "arn:aws:kms:eu-west-1:111122223333:key/abcd", CredentialsFile: creds, Profile: "backup",
			PartSize: 16 << 20, ParallelParts: 8},
		// Defaults: us-east-1, path-style, 8MB parts, 3 at a time.
		"local": {Name: "local", Endpoint: "http://127.0.0.1:9000", Region: "us-east-1", Bucket: "wal",
			PathStyle: true, PartSize: 8 << 20, ParallelParts: 3},
	}
	if !reflect.DeepEqual(c.Storage, want) {
		t.Errorf("Storage =\n%+v\nwant\n%+v", c.Storage, want)
	}
	if got := c.StorageNames(); !slices.Equal(got, []string{"local", "offsite"}) {
		t.Errorf("StorageNames() = %q", got)
	}
	d := DefaultStorageTarget("local")
	d.Endpoint, d.Bucket = "http://127.0.0.1:9000", "wal"
	if d != want["local"] {
		t.Errorf("DefaultStorageTarget = %+v, want the defaults of %+v", d, want["local"])
	}

	// The rows, in name order; optional fields only when set.
	var rows []string
	for _, s := range c.Settings() {
		if strings.HasPrefix(s.Name, "storage.") {
			rows = append(rows, fmt.Sprintf("%s=%s (%s)", s.Name, s.Value, s.Source))
			if s.Description == "" {
				t.Errorf("%s has no description", s.Name)
			}
		}
	}
	wantRows := []string{
		"storage.local.endpoint=http://127.0.0.1:9000 (file)",
		"storage.local.region=us-east-1 (default)",
		"storage.local.bucket=wal (file)",
		"storage.local.path_style=true (default)",
		"storage.local.part_size=8MB (default)",
		"storage.local.parallel_parts=3 (default)",
		"storage.offsite.endpoint=https://s3.example.com (file)",
		"storage.offsite.region=eu-west-1 (file)",
		"storage.offsite.bucket=pg-backups (file)",
		"storage.offsite.prefix=prod/db1 (file)",
		"storage.offsite.path_style=false (file)",
		"storage.offsite.ca_file=" + ca + " (file)",
		"storage.offsite.sse=aws:kms (file)",
		"storage.offsite.sse_kms_key_id=arn:aws:kms:eu-west-1:111122223333:key/abcd (file)",
		"storage.offsite.credentials_file=" + creds + " (file)",
		"storage.offsite.profile=backup (file)",
		"storage.offsite.part_size=16MB (file)",
		"storage.offsite.parallel_parts=8 (file)",
	}
	if !slices.Equal(rows, wantRows) {
		t.Errorf("Settings rows =\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(wantRows, "\n"))
	}
	if len(c.Settings()) != len(settings)+len(wantRows) {
		t.Errorf("Settings() has %d rows, want %d", len(c.Settings()), len(settings)+len(wantRows))
	}

	s := c.String()
	for _, w := range []string{
		`relay_mode="` + DefaultRelayMode + `" peer_id=0 peers="" storage.local.endpoint="http://127.0.0.1:9000" storage.local.region="us-east-1"`,
		`storage.offsite.path_style=false storage.offsite.ca_file=` + fmt.Sprintf("%q", ca),
		`storage.offsite.part_size=16MB storage.offsite.parallel_parts=8 config_file=`,
	} {
		if !strings.Contains(s, w) {
			t.Errorf("String() = %s\ndoes not hold %s", s, w)
		}
	}
	if strings.Contains(s, password) || strings.Contains(fmt.Sprint(c.Settings()), password) {
		t.Error("the credentials file's content is shown")
	}
}

func TestStorageEmpty(t *testing.T) {
	for _, y := range []string{"storage:\n", "storage: {}\n", "listen: :1\n"} {
		c, err := loadYAML(t, y)
		if err != nil {
			t.Fatalf("%q: %v", y, err)
		}
		if len(c.Storage) != 0 || len(c.StorageNames()) != 0 || len(c.Settings()) != len(settings) {
			t.Errorf("%q: Storage = %v", y, c.Storage)
		}
	}
}

func TestPartSize(t *testing.T) {
	tests := []struct {
		yaml string
		want int64
		err  string
	}{
		{"5242880", 5 << 20, ""},
		{`"5242880"`, 5 << 20, ""},
		{"5MB", 5 << 20, ""},
		{"5 MB", 5 << 20, ""},
		{"6144kB", 6 << 20, ""},
		{"1GB", 1 << 30, ""},
		{"5GB", 5 << 30, ""},
		{"5368709120B", 5 << 30, ""},
		{"4MB", 0, "storage.s.part_size: 4MB is not from 5MB to 5GB"},
		{"6GB", 0, "storage.s.part_size: 6GB is not from 5MB to 5GB"},
		{"1TB", 0, "is not from 5MB to 5GB"},
		{"5242879", 0, "5242879B is not from 5MB to 5GB"},
		{"5mb", 0, `storage.s.part_size: "5mb" has unit "mb"`},
		{"5MiB", 0, `has unit "MiB"`},
		{"1.5GB", 0, `has unit ".5GB"`},
		{"MB", 0, `"MB" is not a size`},
		{"-1", 0, "is not from 5MB"},
		{"5.5", 0, `storage.s.part_size: "5.5" is not a size`},
		{"[1]", 0, "storage.s.part_size: a size must be"},
		{"99999999999999999999MB", 0, "too large"},
		{"9999999999999TB", 0, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			c, err := loadYAML(t, "storage:\n  s:\n    endpoint: http://h\n    bucket: bkt\n    part_size: "+tt.yaml+"\n")
			if tt.err != "" {
				mustContainAll(t, err, tt.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Storage["s"].PartSize; got != tt.want {
				t.Errorf("PartSize = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestStorageRefusals checks each refusal, with the full key of the field
// it blames.
func TestStorageRefusals(t *testing.T) {
	_, creds := storageFiles(t)
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("not.pem", "hello\n", 0o644)
	keyPEM := write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o644)
	badCert := write("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", 0o644)
	loose := write("loose", "[default]\n", 0o644)
	groupRoot := write("group-root", "[default]\n", 0o640)
	badINI := write("bad.ini", "[default\n", 0o600)

	base := "endpoint: https://s3.example.com\n    bucket: pg-backups\n"
	tests := []struct {
		name, target string // target: the lines of target t (indented 4)
		want         string
	}{
		{"no endpoint", "bucket: b12\n", "storage.t.endpoint: must be set"},
		{"no bucket", "endpoint: http://h\n", "storage.t.bucket: must be set"},
		{"null target", "", "storage.t.endpoint: must be set"},
		{"ftp endpoint", "endpoint: ftp://h\n    bucket: b12\n", `storage.t.endpoint: "ftp://h" is not an http:// or https:// URL`},
		{"no scheme", "endpoint: s3.example.com\n    bucket: b12\n", "is not an http:// or https:// URL"},
		{"no host", "endpoint: https://\n    bucket: b12\n", `"https://" has no host`},
		{"path", "endpoint: https://h/bucket\n    bucket: b12\n", "storage.t.endpoint: \"https://h/bucket\" must be scheme://host[:port] only"},
		{"trailing slash", "endpoint: https://h/\n    bucket: b12\n", "must be scheme://host[:port] only"},
		{"query", "endpoint: https://h?x=1\n    bucket: b12\n", "must be scheme://host[:port] only"},
		{"fragment", "endpoint: 'https://h#x'\n    bucket: b12\n", "must be scheme://host[:port] only"},
		{"bad port", "endpoint: https://h:0\n    bucket: b12\n", `port "0"`},
		{"credentials in endpoint", "endpoint: https://AKIA:" + password + "@h\n    bucket: b12\n", "storage.t.endpoint: must not hold credentials"},
		{"empty region", base + "    region: ''\n", "storage.t.region: must not be empty"},
		{"bad region", base + "    region: eu west\n", `storage.t.region: "eu west" is not a region name`},
		{"short bucket", "endpoint: http://h\n    bucket: ab\n", `storage.t.bucket: "ab" is not a bucket name`},
		{"long bucket", "endpoint: http://h\n    bucket: " + strings.Repeat("a", 64) + "\n", "is not a bucket name"},
		{"upper bucket", "endpoint: http://h\n    bucket: Backups\n", "is not a bucket name"},
		{"underscore bucket", "endpoint: http://h\n    bucket: pg_backups\n", "is not a bucket name"},
		{"bucket ends with hyphen", "endpoint: http://h\n    bucket: backups-\n", "is not a bucket name"},
		{"bucket two dots", "endpoint: http://h\n    bucket: a..b\n", "two adjacent periods"},
		{"bucket IP", "endpoint: http://h\n    bucket: 192.168.5.4\n", "formatted as an IP address"},
		{"bucket xn--", "endpoint: http://h\n    bucket: xn--abc\n", `the prefix "xn--" is reserved`},
		{"bucket -s3alias", "endpoint: http://h\n    bucket: abc-s3alias\n", `the suffix "-s3alias" is reserved`},
		{"prefix dotdot", base + "    prefix: a/../b\n", `storage.t.prefix: "a/../b" has a ".." segment`},
		{"prefix dot", base + "    prefix: ./b\n", `has a "." segment`},
		{"prefix empty segment", base + "    prefix: a//b\n", `storage.t.prefix: "a//b" has an empty segment`},
		{"prefix NUL", base + "    prefix: \"a\\0b\"\n", "storage.t.prefix: \"a\\x00b\" holds a control character"},
		{"prefix long", base + "    prefix: " + strings.Repeat("a", 513) + "\n", "storage.t.prefix: is longer than 512 bytes"},
		{"missing ca", base + "    ca_file: " + filepath.Join(dir, "absent") + "\n", "storage.t.ca_file: cannot read the CA bundle"},
		{"ca not PEM", base + "    ca_file: " + notPEM + "\n", "storage.t.ca_file: " + fmt.Sprintf("%q", notPEM) + " holds no PEM certificate"},
		{"ca holds a key", base + "    ca_file: " + keyPEM + "\n", "holds a PRIVATE KEY block"},
		{"ca bad cert", base + "    ca_file: " + badCert + "\n", "certificate 1:"},
		{"bad sse", base + "    sse: aes256\n", `storage.t.sse: "aes256" is not one of , AES256, aws:kms`},
		{"kms key without kms", base + "    sse: AES256\n    sse_kms_key_id: k\n", "storage.t.sse_kms_key_id: needs sse aws:kms"},
		{"missing credentials", base + "    credentials_file: " + filepath.Join(dir, "absent") + "\n", "storage.t.credentials_file: cannot read the credentials"},
		{"credentials a directory", base + "    credentials_file: " + dir + "\n", "is not a regular file"},
		{"loose credentials", base + "    credentials_file: " + loose + "\n", "storage.t.credentials_file: " + fmt.Sprintf("%q", loose) + " has permissions 0644"},
		{"no such profile", base + "    credentials_file: " + creds + "\n    profile: prod\n", "storage.t.credentials_file: " + fmt.Sprintf("%q", creds) + " has no [prod] profile"},
		{"bad header", base + "    credentials_file: " + badINI + "\n    profile: default\n", "line 1: a section header without its closing ']'"},
		{"profile without file", base + "    profile: default\n", "storage.t.profile: needs credentials_file"},
		{"bad profile", base + "    credentials_file: " + creds + "\n    profile: a]b\n", "storage.t.profile: \"a]b\" is not a profile name"},
		{"zero parts", base + "    parallel_parts: 0\n", "storage.t.parallel_parts: 0 is not from 1 to 64"},
		{"too many parts", base + "    parallel_parts: 65\n", "storage.t.parallel_parts: 65 is not from 1 to 64"},
		{"parts not a number", base + "    parallel_parts: many\n", "line 5: storage.t.parallel_parts: cannot unmarshal !!str `many` into int"},
		{"path_style not a bool", base + "    path_style: sometimes\n", "line 5: storage.t.path_style: cannot unmarshal"},
		{"endpoint a list", "endpoint: [a]\n    bucket: b12\n", "line 3: storage.t.endpoint: cannot unmarshal !!seq into string"},
		{"unknown key", base + "    bukcet: x\n", `line 5: storage.t: unknown key "bukcet"`},
		{"access key in the file", base + "    aws_secret_access_key: " + password + "\n", `line 5: storage.t: unknown key "aws_secret_access_key"`},
		{"duplicate key", base + "    bucket: other\n", `line 5: storage.t: key "bucket" already defined at line 4`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := "storage:\n  t:\n    " + tt.target
			_, err := loadYAML(t, y)
			mustContainAll(t, err, tt.want)
			if err != nil && strings.Contains(err.Error(), password) {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}

	// A root-owned credentials file may be group-readable; one owned by
	// anyone else may not.
	if os.Geteuid() == 0 {
		okYAML := "storage:\n  t:\n    " + base + "    credentials_file: " + groupRoot + "\n"
		if _, err := loadYAML(t, okYAML); err != nil {
			t.Errorf("root-owned 0640: %v", err)
		}
		if err := os.Chown(groupRoot, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := loadYAML(t, okYAML)
		mustContainAll(t, err, "has permissions 0640", "or u=rw,g=r (0640) or less if owned by root")
	}

	others := []struct{ name, yaml, want string }{
		{"storage a list", "storage: [a]\n", "line 1: storage must be a mapping of target names to targets, not !!seq"},
		{"target a string", "storage:\n  t: x\n", "line 2: storage.t must be a mapping of keys to values, not !!str"},
		{"upper-case name", "storage:\n  Offsite:\n    endpoint: http://h\n", `line 2: storage: target name "Offsite" must be a lowercase letter`},
		{"dotted name", "storage:\n  off.site: {}\n", `target name "off.site"`},
		{"long name", "storage:\n  a" + strings.Repeat("b", 63) + ": {}\n", "target name"},
		{"digit first", "storage:\n  1st: {}\n", `target name "1st"`},
		{"merge key", "storage:\n  <<: {}\n", "line 2: storage: a target name must be a plain string"},
		{"duplicate target", "storage:\n  t: {}\n  t: {}\n", `line 3: storage: target "t" already defined at line 2`},
		{"storage twice", "storage: {}\nstorage: {}\n", `line 2: mapping key "storage" already defined at line 1`},
	}
	for _, tt := range others {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.yaml)
			mustContainAll(t, err, tt.want)
		})
	}
}

// TestStorageEveryProblem checks that Validate reports every bad field of
// every target together, each under its own key.
func TestStorageEveryProblem(t *testing.T) {
	_, err := loadYAML(t, `
storage:
  a:
    endpoint: ftp://h
    bucket: B
    sse: x
  b:
    region: ""
    parallel_parts: 100
`)
	mustContainAll(t, err, "storage.a.endpoint:", "storage.a.bucket:", "storage.a.sse:",
		"storage.b.endpoint: must be set", "storage.b.bucket: must be set", "storage.b.region:", "storage.b.parallel_parts:")
}

// TestStorageHandBuilt checks Validate on a Config built without Load.
func TestStorageHandBuilt(t *testing.T) {
	c := Default()
	good := DefaultStorageTarget("s")
	good.Endpoint, good.Bucket = "https://h", "bkt"
	c.Storage = map[string]StorageTarget{"s": good}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	misnamed := good
	misnamed.Name = "other"
	c.Storage = map[string]StorageTarget{"s": misnamed, "Bad": good}
	slashed := good
	slashed.Name, slashed.Prefix = "x", "/p"
	c.Storage["x"] = slashed
	zero := StorageTarget{Name: "z"}
	c.Storage["z"] = zero
	mustContainAll(t, c.Validate(), `storage.s: Name is "other", not its key`, `storage: target name "Bad"`,
		`storage.x.prefix: "/p" must not start or end with '/'`, "storage.z.region: must not be empty",
		"storage.z.part_size: 0 is not from 5MB", "storage.z.parallel_parts: 0 is not from 1")
}

// TestStorageOnlyInFile checks that neither a flag nor the environment
// sets storage, and that usage says so.
func TestStorageOnlyInFile(t *testing.T) {
	_, err := Load([]string{"--storage", "x"}, env{}.get, nil)
	if err == nil || !strings.Contains(err.Error(), "flag provided but not defined: -storage") {
		t.Errorf("--storage: %v", err)
	}
	_, err = Load(nil, env{"PGVERBS_STORAGE": "offsite"}.get, nil)
	mustContainAll(t, err, "PGVERBS_STORAGE: storage targets are set only in the config file")

	var b bytes.Buffer
	if _, err := Load([]string{"--help"}, env{}.get, &b); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "are set only in the config file: no flag or environment variable sets them") {
		t.Errorf("usage does not explain storage:\n%s", b.String())
	}
}

func TestStorageRestartNeeded(t *testing.T) {
	a := DefaultStorageTarget("a")
	a.Endpoint, a.Bucket = "https://h", "bkt"
	old := Default()
	old.Storage = map[string]StorageTarget{"a": a}
	same := Default()
	same.Storage = map[string]StorageTarget{"a": a}
	if got := RestartNeeded(&old, &same); got != nil {
		t.Errorf("same targets: RestartNeeded = %q", got)
	}
	empty, none := Default(), Default()
	empty.Storage = map[string]StorageTarget{}
	if got := RestartNeeded(&none, &empty); got != nil {
		t.Errorf("nil vs empty: RestartNeeded = %q", got)
	}
	changed := a
	changed.Prefix = "p"
	for name, m := range map[string]map[string]StorageTarget{
		"field changed": {"a": changed},
		"target added":  {"a": a, "b": a},
		"all removed":   nil,
	} {
		cur := Default()
		cur.Storage = m
		if got := RestartNeeded(&old, &cur); !slices.Equal(got, []string{"storage"}) {
			t.Errorf("%s: RestartNeeded = %q, want [storage]", name, got)
		}
	}
	cur := Default()
	cur.Listen = ":1"
	if got := RestartNeeded(&old, &cur); !slices.Equal(got, []string{"listen", "storage"}) {
		t.Errorf("RestartNeeded = %q, want [listen storage]", got)
	}
}
