package batch

import (
	"fmt"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// Connections from the command line and the connections file: errors say where the bad one was given.
func TestParseConnSpecs(t *testing.T) {
	dir := t.TempDir()
	file := func(name, dsn string, line int) ConnSpec {
		return ConnSpec{Name: name, DSN: dsn, Origin: fmt.Sprintf("connection %s (connections file /etc/c.yaml, line %d)", name, line)}
	}
	flag := func(name, dsn string) ConnSpec { return ConnSpec{Name: name, DSN: dsn, Origin: "--connection " + name} }
	cases := []struct {
		name    string
		specs   []ConnSpec
		want    []slipway.Connection
		wantErr string
	}{
		{"both origins", []ConnSpec{flag("wh", "sqlite://"+dir+"/w.db"), file("pg", "postgres://bob:s3cret@db.example:6543/sales", 2)},
			[]slipway.Connection{{Name: "pg", Driver: "postgres", Database: "db.example:6543/sales"}, {Name: "wh", Driver: "sqlite", Database: dir + "/w.db"}}, ""},
		{"same name in both", []ConnSpec{flag("wh", "sqlite://"+dir+"/w.db"), file("wh", "sqlite://"+dir+"/x.db", 3)}, nil,
			"connection wh is given twice: as --connection wh and as connection wh (connections file /etc/c.yaml, line 3); keep one"},
		{"bad name in the file", []ConnSpec{file("Ware House", "sqlite://"+dir+"/w.db", 4)}, nil, `(connections file /etc/c.yaml, line 4): invalid name "Ware House"`},
		{"bad url in the file", []ConnSpec{file("m", "mysql://u:pw@h/db", 5)}, nil, `connection m (connections file /etc/c.yaml, line 5): unsupported database URL "mysql://u:****@h/db"`},
		{"bad postgres url in the file", []ConnSpec{file("p", "postgres://u:pw@h:notaport/db", 6)}, nil, "line 6): invalid PostgreSQL URL"},
		{"missing folder", []ConnSpec{file("s", "sqlite:///no/such/folder/x.db", 7)}, nil, "line 7): folder /no/such/folder does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConnSpecs(tc.specs)
			checkConnections(t, got, err, tc.want, tc.wantErr)
		})
	}
}

// checkConnections compares parsed connections (as the API lists them: no credentials) or the parse error with
// the expected ones; an error must never show a password.
func checkConnections(t *testing.T, got map[string]*Conn, err error, want []slipway.Connection, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) || strings.Contains(err.Error(), "pw@") {
			t.Fatalf("err = %v; want %q (and no password)", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if pub := publicConnections(got); fmt.Sprint(pub) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want %+v", pub, want)
	}
}
