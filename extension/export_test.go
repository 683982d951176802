package extension

// Shorthands for tests.

// ParseControl is parseControl without the key lines.
func ParseControl(file string, data []byte) (*Package, error) {
	p, _, err := parseControl(file, data)
	return p, err
}

// ParseNativeControl is parseNativeControl without the key lines.
func ParseNativeControl(name, file string, data []byte) (*Package, error) {
	p, _, err := parseNativeControl(name, file, data)
	return p, err
}

// Resolve is ResolveEnv with no server extensions.
func Resolve(r *Repo, name, version string, installed map[string]Installed, cascade bool) (*Plan, error) {
	return ResolveEnv(r, name, version, Env{Installed: installed}, cascade)
}

// PrepareScript prepares a script substituting only @extschema@, as the
// 2010 format's scripts need.
func PrepareScript(file, script, schema string) ([]Statement, error) {
	return prepareScript(file, script, ScriptOptions{Schema: schema}, false)
}
