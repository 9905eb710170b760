package config

import (
	"io"
	"strings"
	"testing"
)

func TestReplicaScheduling(t *testing.T) {
	cases := []struct {
		name string
		env  string
		args []string
		want string
		err  string
	}{
		{"default", "", nil, "batch", ""},
		{"flag", "", []string{"--replica-scheduling", "normal"}, "normal", ""},
		{"environment", "normal", nil, "normal", ""},
		{"flag wins over environment", "normal", []string{"--replica-scheduling", "batch"}, "batch", ""},
		{"unknown policy", "", []string{"--replica-scheduling", "fifo"}, "", `--replica-scheduling "fifo": want batch or normal`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "SLIPWAY_REPLICA_SCHEDULING" {
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
			if err != nil || c.ReplicaScheduling != tc.want {
				t.Fatalf("got %q, %v; want %q", c.ReplicaScheduling, err, tc.want)
			}
		})
	}
}
