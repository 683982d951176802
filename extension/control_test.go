package extension

import (
	"reflect"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestParseControl(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  string
		want  *Package
		code  pgerr.Code // for errors
		wantE string     // part of the error message
	}{
		{
			name: "design example",
			data: "# comment\nname = foo\nversion = 1.0\ncomment = 'what it does'\ndepends  = bar (>= 1.1), baz\nconflicts = bla (< 0.8)\ncustom_variable_classes = 'foo'\n",
			want: &Package{
				Name: "foo", Version: "1.0", Comment: "what it does",
				Depends:               []Requirement{{Name: "bar", Constraints: []Constraint{{">=", "1.1"}}}, {Name: "baz"}},
				Conflicts:             []Requirement{{Name: "bla", Constraints: []Constraint{{"<", "0.8"}}}},
				CustomVariableClasses: []string{"foo"},
			},
		},
		{
			name: "comments, blank lines, no equals sign, CRLF",
			data: "\r\n  # indented comment\nname foo # trailing comment\r\n\n\tversion\t=\t2.0-rc1\n",
			want: &Package{Name: "foo", Version: "2.0-rc1"},
		},
		{
			name: "quoted values with escapes",
			data: "name = 'foo'\nversion = '1.0'\ncomment = 'it''s \\'quoted\\' # not a comment' # a comment\n",
			want: &Package{Name: "foo", Version: "1.0", Comment: "it's 'quoted' # not a comment"},
		},
		{
			name: "backslash escapes as postgresql.conf",
			data: "name = foo\nversion = 1\ncomment = 'a\\tb\\nc\\101\\\\'\n",
			want: &Package{Name: "foo", Version: "1", Comment: "a\tb\ncA\\"},
		},
		{
			name: "empty quoted lists",
			data: "name = foo\nversion = 1\ndepends = ''\ncomment = ''\n",
			want: &Package{Name: "foo", Version: "1"},
		},
		{
			name: "several classes",
			data: "name = foo\nversion = 1\ncustom_variable_classes = 'foo, foo_ext'\n",
			want: &Package{Name: "foo", Version: "1", CustomVariableClasses: []string{"foo", "foo_ext"}},
		},
		{
			name: "byte order mark",
			data: "\xef\xbb\xbfname = foo\nversion = 1\n",
			want: &Package{Name: "foo", Version: "1"},
		},
		{name: "unknown key", data: "name = foo\nversion = 1\nrequires = bar\n", code: pgerr.SyntaxError, wantE: `control:3: unknown key "requires"`},
		{name: "keys are case-sensitive", data: "Name = foo\n", code: pgerr.SyntaxError, wantE: `control:1: unknown key "Name"`},
		{name: "duplicate key", data: "name = foo\nversion = 1\nversion = 2\n", code: pgerr.SyntaxError, wantE: `control:3: duplicate key "version" (first set at line 2)`},
		{name: "missing version", data: "name = foo\ncomment = 'x'\n", code: pgerr.InvalidParameterValue, wantE: `control: missing required key "version"`},
		{name: "missing name", data: "version = 1\n", code: pgerr.InvalidParameterValue, wantE: `missing required key "name"`},
		{name: "empty file", data: "", code: pgerr.InvalidParameterValue, wantE: "missing required key"},
		{name: "invalid name", data: "name = ../foo\nversion = 1\n", code: pgerr.InvalidParameterValue, wantE: `control:1: invalid value for "name"`},
		{name: "invalid version", data: "name = foo\nversion = 1.0 beta\n", code: pgerr.InvalidParameterValue, wantE: `control:2: invalid value for "version"`},
		{name: "bad depends syntax", data: "name = foo\nversion = 1\ndepends = bar (>= 1.1\n", code: pgerr.InvalidParameterValue, wantE: `control:3: invalid value for "depends"`},
		{name: "bad depends operator", data: "name = foo\nversion = 1\ndepends = bar (~> 1.1)\n", code: pgerr.InvalidParameterValue, wantE: `control:3: invalid value for "depends"`},
		{name: "bad conflicts name", data: "name = foo\nversion = 1\nconflicts = a/b\n", code: pgerr.InvalidParameterValue, wantE: `control:3: invalid value for "conflicts"`},
		{name: "bad classes", data: "name = foo\nversion = 1\ncustom_variable_classes = 'foo,'\n", code: pgerr.InvalidParameterValue, wantE: `control:3: invalid value for "custom_variable_classes"`},
		{name: "unterminated quote", data: "name = foo\ncomment = 'abc\n", code: pgerr.SyntaxError, wantE: "control:2: unterminated quoted string"},
		{name: "text after quoted value", data: "comment = 'a' b\n", code: pgerr.SyntaxError, wantE: "control:1: syntax error"},
		{name: "quote in bare value", data: "comment = it's\n", code: pgerr.SyntaxError, wantE: "control:1: quote character inside unquoted value"},
		{name: "missing value", data: "name =\n", code: pgerr.SyntaxError, wantE: `control:1: missing value for "name"`},
		{name: "missing value before comment", data: "name = # none\n", code: pgerr.SyntaxError, wantE: `control:1: missing value for "name"`},
		{name: "bad key", data: "= foo\n", code: pgerr.SyntaxError, wantE: "control:1: syntax error"},
		{name: "key glued to junk", data: "name:foo\n", code: pgerr.SyntaxError, wantE: "control:1: syntax error"},
		{name: "NUL byte", data: "name = foo\x00\n", code: pgerr.CharacterNotInRepertoire, wantE: "control:1: invalid byte sequence"},
		{name: "escaped NUL", data: "comment = 'a\\0'\n", code: pgerr.CharacterNotInRepertoire, wantE: "control:1:"},
		{name: "invalid UTF-8", data: "name = foo\ncomment = '\xff'\n", code: pgerr.CharacterNotInRepertoire, wantE: "control:2:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseControl("control", []byte(tc.data))
			if tc.want == nil {
				wantError(t, err, tc.code, tc.wantE)
				return
			}
			if err != nil {
				t.Fatalf("ParseControl: %v", err)
			}
			if !reflect.DeepEqual(p, tc.want) {
				t.Errorf("ParseControl =\n%+v\nwant\n%+v", p, tc.want)
			}
		})
	}
}

func TestParseSettings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		data  string
		want  []Setting
		code  pgerr.Code
		wantE string
	}{
		{
			name: "postgresql.conf syntax",
			data: "# settings\nfoo.enabled = on\nfoo.greeting 'it''s me' # comment\n\nfoo.path = '/a b/c'\nwork_mem=64MB\n",
			want: []Setting{{"foo.enabled", "on"}, {"foo.greeting", "it's me"}, {"foo.path", "/a b/c"}, {"work_mem", "64MB"}},
		},
		{name: "empty file", data: "# nothing\n", want: nil},
		{name: "duplicate in other case", data: "foo.x = 1\nFOO.X = 2\n", code: pgerr.SyntaxError, wantE: `foo.conf:2: duplicate setting "FOO.X" (first set at line 1)`},
		{name: "include refused", data: "include '/etc/passwd'\n", code: pgerr.SyntaxError, wantE: `foo.conf:1: "include" is not allowed`},
		{name: "include_dir refused", data: "include_dir = 'conf.d'\n", code: pgerr.SyntaxError, wantE: "foo.conf:1:"},
		{name: "dangling dot", data: "foo. = 1\n", code: pgerr.SyntaxError, wantE: "foo.conf:1: syntax error"},
		{name: "unterminated", data: "a = 'b\n", code: pgerr.SyntaxError, wantE: "foo.conf:1: unterminated quoted string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSettings("foo.conf", []byte(tc.data))
			if tc.code != "" {
				wantError(t, err, tc.code, tc.wantE)
				return
			}
			if err != nil {
				t.Fatalf("ParseSettings: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseSettings = %q, want %q", got, tc.want)
			}
		})
	}
}
