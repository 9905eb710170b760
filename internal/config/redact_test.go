package config

import (
	"strings"
	"testing"
)

func TestRedactedHidesPasswords(t *testing.T) {
	c := Default()
	c.DatabaseURL = "postgres://slipway:s3cret-pw@db:5432/slipway"
	c.Database.Postgres = c.DatabaseURL
	c.Connections = []string{"wh=postgres://etl:hunter2@wh/dw", "local=sqlite:///tmp/x.db"}
	c.FileConnections = []FileConnection{{Name: "f", DSN: "postgresql://u:p%40ss@h/d"}}
	got := string(c.Redacted())
	for _, secret := range []string{"s3cret-pw", "hunter2", "p%40ss"} {
		if strings.Contains(got, secret) {
			t.Errorf("the redacted configuration shows %q: %s", secret, got)
		}
	}
	for _, kept := range []string{"postgres://slipway:xxxxx@db:5432/slipway", "sqlite:///tmp/x.db", c.DataDir} {
		if !strings.Contains(got, kept) {
			t.Errorf("the redacted configuration lost %q: %s", kept, got)
		}
	}
}
