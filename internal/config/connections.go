package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FileConnection is a named connection read from the connections file, with where it was written.
type FileConnection struct {
	Name   string
	DSN    string // ${ENV_VAR} references expanded
	Origin string // "connection wh (connections file /etc/slipway/connections.yaml, line 3)"
}

// maxConnectionsFile bounds the connections file (it holds a few URLs).
const maxConnectionsFile = 1 << 20

var envRef = regexp.MustCompile(`\$\{([^}]*)\}`)
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// loadConnectionsFile reads a YAML (or JSON, which YAML reads too) file mapping connection names to database
// URLs, expanding ${ENV_VAR} in the URLs with getenv. It returns warnings for the log: a file that group or
// others can read and that holds a password written in clear.
func loadConnectionsFile(path string, getenv func(string) string) ([]FileConnection, []string, error) {
	where := "connections file " + path
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--connections-file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", where)
	}
	if st.Size() > maxConnectionsFile {
		return nil, nil, fmt.Errorf("%s is larger than %d bytes: it maps names to database URLs, one per line", where, maxConnectionsFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--connections-file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s is neither valid YAML nor JSON: %v", where, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil, nil // an empty file: no connections
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("%s, line %d: want a mapping of connection names to database URLs, e.g.\n  warehouse: postgres://scorer:${WAREHOUSE_PASSWORD}@db:5432/analytics\n  local: sqlite:///srv/scores.db", where, root.Line)
	}
	var out []FileConnection
	var clear []string // names whose URL holds a password in clear
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		at := fmt.Sprintf("%s, line %d", where, k.Line)
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return nil, nil, fmt.Errorf("%s: a connection name must be a non-empty string", at)
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			return nil, nil, fmt.Errorf("%s: connection %s is given twice (first on line %d)", at, name, first)
		}
		seen[name] = k.Line
		if v.Kind != yaml.ScalarNode || v.Tag != "!!str" || v.Value == "" {
			return nil, nil, fmt.Errorf("%s: connection %s: the value must be a database URL string (sqlite:///path/to.db or postgres://user:${PASSWORD_VAR}@host:5432/db)", at, name)
		}
		dsn, err := expandEnv(v.Value, getenv)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: connection %s: %w", at, name, err)
		}
		if clearPassword(v.Value) {
			clear = append(clear, fmt.Sprintf("%s (line %d)", name, k.Line))
		}
		out = append(out, FileConnection{Name: name, DSN: dsn, Origin: fmt.Sprintf("connection %s (%s, line %d)", name, where, k.Line)})
	}
	var warnings []string
	if perm := st.Mode().Perm(); perm&0o044 != 0 && len(clear) > 0 {
		warnings = append(warnings, fmt.Sprintf("%s is readable by group or others (mode %04o) and holds a password for %s: run chmod 600 %s, or put the password in an environment variable and write ${VAR} in its place",
			where, perm, strings.Join(clear, ", "), path))
	}
	return out, warnings, nil
}

// expandEnv replaces ${NAME} with the environment variable NAME; an unset or empty one is an error (a URL
// with a missing password fails later with a less helpful message).
func expandEnv(s string, getenv func(string) string) (string, error) {
	var firstErr error
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if !envName.MatchString(name) {
			if firstErr == nil {
				firstErr = fmt.Errorf("%q is not an environment variable reference: write ${NAME} with letters, digits and '_'", m)
			}
			return m
		}
		v := getenv(name)
		if v == "" && firstErr == nil {
			firstErr = fmt.Errorf("environment variable %s is not set (or empty)", name)
		}
		return v
	})
	return out, firstErr
}

// clearPassword reports whether a URL as written (before expansion) holds a password that is not only
// ${VAR} references: in its user info or as a password= option.
func clearPassword(raw string) bool {
	literal := func(p string) bool { return strings.TrimSpace(envRef.ReplaceAllString(p, "")) != "" }
	// Parse with the references neutralised: ${...} is not valid in a URL's user info.
	u, err := url.Parse(envRef.ReplaceAllString(raw, "ENVREF"))
	if err != nil {
		return strings.Contains(raw, "password") // cannot tell: assume the worst
	}
	if p, ok := u.User.Password(); ok && literal(strings.ReplaceAll(p, "ENVREF", "")) {
		return true
	}
	if p := u.Query().Get("password"); p != "" && literal(strings.ReplaceAll(p, "ENVREF", "")) {
		return true
	}
	return false
}
