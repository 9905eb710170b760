package config

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// Settings given by flag or environment variable, with the flag winning, and refused with a clear message.
func TestStringSettings(t *testing.T) {
	scheduling := func(c Config) string { return c.ReplicaScheduling }
	serverScheduling := func(c Config) string { return c.ServerScheduling }
	store := func(c Config) string { return c.ArtifactStore }
	database := func(c Config) string { return fmt.Sprintf("%+v", c.Database) }
	budget := func(c Config) string { return fmt.Sprint(c.ModelMemoryBudget) }
	lease := func(c Config) string { return c.LeaseTTL.String() }
	cases := []struct {
		name   string
		envKey string
		env    string
		args   []string
		get    func(Config) string
		want   string
		err    string
	}{
		{"scheduling default", "SLIPWAY_REPLICA_SCHEDULING", "", nil, scheduling, "auto", ""},
		{"scheduling flag", "SLIPWAY_REPLICA_SCHEDULING", "", []string{"--replica-scheduling", "batch"}, scheduling, "batch", ""},
		{"scheduling environment", "SLIPWAY_REPLICA_SCHEDULING", "batch", nil, scheduling, "batch", ""},
		{"scheduling flag wins over environment", "SLIPWAY_REPLICA_SCHEDULING", "batch", []string{"--replica-scheduling", "normal"}, scheduling, "normal", ""},
		{"unknown policy", "SLIPWAY_REPLICA_SCHEDULING", "", []string{"--replica-scheduling", "fifo"}, scheduling, "", `--replica-scheduling "fifo": want auto, batch or normal`},
		{"server scheduling default", "SLIPWAY_SERVER_SCHEDULING", "", nil, serverScheduling, "batch", ""},
		{"server scheduling environment", "SLIPWAY_SERVER_SCHEDULING", "normal", nil, serverScheduling, "normal", ""},
		{"server scheduling flag wins over environment", "SLIPWAY_SERVER_SCHEDULING", "normal", []string{"--server-scheduling", "batch"}, serverScheduling, "batch", ""},
		{"unknown server class", "SLIPWAY_SERVER_SCHEDULING", "", []string{"--server-scheduling", "idle"}, serverScheduling, "", `--server-scheduling "idle": want batch or normal`},
		{"artifacts on local disk by default", "SLIPWAY_ARTIFACT_STORE", "", nil, store, "", ""},
		{"artifact store flag", "SLIPWAY_ARTIFACT_STORE", "", []string{"--artifact-store", "s3://models/prod"}, store, "s3://models/prod", ""},
		{"artifact store environment", "SLIPWAY_ARTIFACT_STORE", "s3://models/env", nil, store, "s3://models/env", ""},
		{"database in the data folder by default", "SLIPWAY_DATABASE", "", []string{"--data-dir", "/srv/slipway"}, database, "{SQLite:/srv/slipway/slipway.db Postgres:}", ""},
		{"sqlite database flag", "SLIPWAY_DATABASE", "", []string{"--database", "sqlite:///var/lib/s.db"}, database, "{SQLite:/var/lib/s.db Postgres:}", ""},
		{"postgres database environment", "SLIPWAY_DATABASE", "postgres://u:p@db:5432/slipway", nil, database, "{SQLite: Postgres:postgres://u:p@db:5432/slipway}", ""},
		{"postgresql scheme", "SLIPWAY_DATABASE", "", []string{"--database", "postgresql://db/s"}, database, "{SQLite: Postgres:postgresql://db/s}", ""},
		{"relative sqlite path", "SLIPWAY_DATABASE", "", []string{"--database", "sqlite://s.db"}, database, "", "want sqlite:///absolute/path"},
		{"unknown database", "SLIPWAY_DATABASE", "mysql://u:secret@db/s", nil, database, "", `unsupported URL scheme "mysql"`},
		{"model memory budget default (0: half the machine's)", "SLIPWAY_MODEL_MEMORY_BUDGET", "", nil, budget, "0", ""},
		{"model memory budget flag", "SLIPWAY_MODEL_MEMORY_BUDGET", "", []string{"--model-memory-budget", "8GiB"}, budget, "8589934592", ""},
		{"model memory budget environment", "SLIPWAY_MODEL_MEMORY_BUDGET", "512MiB", nil, budget, "536870912", ""},
		{"model memory budget not a size", "SLIPWAY_MODEL_MEMORY_BUDGET", "", []string{"--model-memory-budget", "lots"}, budget, "", `--model-memory-budget: invalid size "lots"`},
		{"lease TTL default", "SLIPWAY_LEASE_TTL", "", nil, lease, "15s", ""},
		{"lease TTL flag", "SLIPWAY_LEASE_TTL", "", []string{"--lease-ttl", "5s"}, lease, "5s", ""},
		{"lease TTL environment", "SLIPWAY_LEASE_TTL", "1m", nil, lease, "1m0s", ""},
		{"lease TTL flag wins over environment", "SLIPWAY_LEASE_TTL", "1m", []string{"--lease-ttl", "20s"}, lease, "20s", ""},
		{"lease TTL not a duration", "SLIPWAY_LEASE_TTL", "15", nil, lease, "", `SLIPWAY_LEASE_TTL="15": not a duration`},
		{"lease TTL too short", "SLIPWAY_LEASE_TTL", "", []string{"--lease-ttl", "500ms"}, lease, "", "--lease-ttl 500ms: want between 3s and 10m0s"},
		{"lease TTL too long", "SLIPWAY_LEASE_TTL", "", []string{"--lease-ttl", "1h"}, lease, "", "--lease-ttl 1h0m0s: want between 3s and 10m0s"},
		{"advertise gRPC needs PostgreSQL and --grpc-addr", "SLIPWAY_ADVERTISE_GRPC", "10.0.0.5:9001", nil, lease, "", "--advertise-grpc is for several servers sharing one PostgreSQL database"},
		{"advertise gRPC not host:port", "SLIPWAY_ADVERTISE_GRPC", "", []string{"--advertise-grpc", "grpc://x:1", "--grpc-addr", ":0", "--database", "postgres://db/s"}, lease, "", `--advertise-grpc "grpc://x:1": want HOST:PORT`},
		{"advertise gRPC", "SLIPWAY_ADVERTISE_GRPC", "10.0.0.5:9001", []string{"--grpc-addr", ":0", "--database", "postgres://db/s"}, func(c Config) string { return c.AdvertiseGRPC }, "10.0.0.5:9001", ""},
		{"artifact store not s3", "SLIPWAY_ARTIFACT_STORE", "", []string{"--artifact-store", "/srv/blobs"}, store, "", `--artifact-store "/srv/blobs": want s3://BUCKET/PREFIX`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == tc.envKey {
					return tc.env
				}
				return ""
			}
			c, err := Parse(append([]string{"--data-dir", t.TempDir()}, tc.args...), getenv, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if got := tc.get(c); err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
