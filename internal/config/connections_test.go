package config

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestConnectionsFile(t *testing.T) {
	env := map[string]string{"WH_PASSWORD": "s3cret", "DB_HOST": "db.example"}
	getenv := func(k string) string { return env[k] }
	cases := []struct {
		name    string
		content string
		mode    os.FileMode
		args    []string
		want    []FileConnection // Origin checked by its line only
		lines   []int
		warn    string // "" = no warning
		err     string
	}{
		{"yaml with env references", "# connections\nwarehouse: postgres://scorer:${WH_PASSWORD}@${DB_HOST}:5432/analytics\nlocal: sqlite:///srv/scores.db\n", 0o644, nil,
			[]FileConnection{{Name: "warehouse", DSN: "postgres://scorer:s3cret@db.example:5432/analytics"}, {Name: "local", DSN: "sqlite:///srv/scores.db"}}, []int{2, 3}, "", ""},
		{"json", `{"warehouse": "postgres://scorer:${WH_PASSWORD}@db:5432/a",
 "local": "sqlite:///srv/x.db"}`, 0o600, nil,
			[]FileConnection{{Name: "warehouse", DSN: "postgres://scorer:s3cret@db:5432/a"}, {Name: "local", DSN: "sqlite:///srv/x.db"}}, []int{1, 2}, "", ""},
		{"empty file", "", 0o644, nil, nil, nil, "", ""},
		{"password in clear, readable by others", "local: sqlite:///x.db\nwh: postgres://u:hunter2@db/a\n", 0o644, nil,
			[]FileConnection{{Name: "local", DSN: "sqlite:///x.db"}, {Name: "wh", DSN: "postgres://u:hunter2@db/a"}}, []int{1, 2}, "holds a password for wh (line 2): run chmod 600", ""},
		{"password option in clear, group-readable", "wh: postgres://u@db/a?password=hunter2\n", 0o640, nil,
			[]FileConnection{{Name: "wh", DSN: "postgres://u@db/a?password=hunter2"}}, []int{1}, "(mode 0640)", ""},
		{"password in clear, private file", "wh: postgres://u:hunter2@db/a\n", 0o600, nil,
			[]FileConnection{{Name: "wh", DSN: "postgres://u:hunter2@db/a"}}, []int{1}, "", ""},
		{"unset variable", "a: sqlite:///x.db\nwh: postgres://u:${NOPE}@db/a\n", 0o600, nil, nil, nil, "", "line 2: connection wh: environment variable NOPE is not set"},
		{"bad reference", "wh: postgres://u:${1X}@db/a\n", 0o600, nil, nil, nil, "", `line 1: connection wh: "${1X}" is not an environment variable reference`},
		{"not a mapping", "- a\n- b\n", 0o600, nil, nil, nil, "", "line 1: want a mapping of connection names to database URLs"},
		{"value not a string", "a: sqlite:///x.db\nb:\n  url: x\n", 0o600, nil, nil, nil, "", "line 2: connection b: the value must be a database URL string"},
		{"number value", "a: 5\n", 0o600, nil, nil, nil, "", "line 1: connection a: the value must be a database URL string"},
		{"twice", "a: sqlite:///x.db\nb: sqlite:///y.db\na: sqlite:///z.db\n", 0o600, nil, nil, nil, "", "line 3: connection a is given twice (first on line 1)"},
		{"invalid yaml", "a: [\n", 0o600, nil, nil, nil, "", "is neither valid YAML nor JSON"},
		{"also on the command line", "wh: sqlite:///x.db\nother: sqlite:///y.db\n", 0o600, []string{"--connection", "wh=sqlite:///z.db"}, nil, nil, "",
			"connection wh is given both on the command line (--connection wh=...) and in the connections file: connection wh (connections file "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "connections.yaml")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"--data-dir", t.TempDir(), "--connections-file", path}, tc.args...)
			c, err := Parse(args, getenv, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v; want one naming %s and containing %q", err, path, tc.err)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("the error shows a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.FileConnections) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", c.FileConnections, tc.want)
			}
			for i, w := range tc.want {
				g := c.FileConnections[i]
				origin := "connection " + w.Name + " (connections file " + path + ", line " + strconv.Itoa(tc.lines[i]) + ")"
				if g.Name != w.Name || g.DSN != w.DSN || g.Origin != origin {
					t.Errorf("connection %d = %+v, want %+v from %q", i, g, w, origin)
				}
			}
			warnings := strings.Join(c.Warnings, "\n")
			if (tc.warn == "") != (warnings == "") || !strings.Contains(warnings, tc.warn) {
				t.Errorf("warnings = %q, want %q", warnings, tc.warn)
			}
			if strings.Contains(warnings, "hunter2") {
				t.Errorf("the warning shows the password: %q", warnings)
			}
		})
	}
}

func TestConnectionsFileFromEnvironment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(path, []byte(`{"wh": "sqlite:///x.db"}`), 0o600)
	env := map[string]string{"SLIPWAY_CONNECTIONS_FILE": path}
	c, err := Parse([]string{"--data-dir", t.TempDir()}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.ConnectionsFile != path || len(c.FileConnections) != 1 || c.FileConnections[0].Name != "wh" {
		t.Fatalf("config %+v, %v", c, err)
	}
	if _, err := Parse([]string{"--data-dir", t.TempDir(), "--connections-file", path + ".missing"}, func(string) string { return "" }, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--connections-file") || !strings.Contains(err.Error(), "c.json.missing") {
		t.Fatalf("missing file: %v", err)
	}
}
