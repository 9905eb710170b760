package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

// The HTTP limits have the documented defaults, take flags, and refuse values that would turn them off by accident.
func TestHTTPLimits(t *testing.T) {
	none := func(string) string { return "" }
	c, err := Parse([]string{"--data-dir", t.TempDir()}, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxHeaderBytes != 64<<10 || c.ReadHeaderTimeout != 10*time.Second || c.IdleTimeout != 2*time.Minute ||
		c.PayloadReadTimeout != time.Minute || c.WriteTimeout != time.Minute {
		t.Errorf("defaults: %d %s %s %s %s", c.MaxHeaderBytes, c.ReadHeaderTimeout, c.IdleTimeout, c.PayloadReadTimeout, c.WriteTimeout)
	}
	c, err = Parse([]string{"--data-dir", t.TempDir(), "--max-header-bytes", "16384", "--read-header-timeout", "2s",
		"--idle-timeout", "30s", "--payload-read-timeout", "0", "--write-timeout", "5s"}, none, io.Discard)
	if err != nil || c.MaxHeaderBytes != 16384 || c.ReadHeaderTimeout != 2*time.Second || c.IdleTimeout != 30*time.Second ||
		c.PayloadReadTimeout != 0 || c.WriteTimeout != 5*time.Second {
		t.Errorf("flags: %+v, %v", c, err)
	}
	for _, args := range [][]string{{"--max-header-bytes", "0"}, {"--read-header-timeout", "0"}, {"--idle-timeout", "-1s"}, {"--write-timeout", "-1s"}, {"--max-conns-per-client", "-1"}} {
		if _, err := Parse(append([]string{"--data-dir", t.TempDir()}, args...), none, io.Discard); err == nil || !strings.Contains(err.Error(), "HTTP limits") {
			t.Errorf("%v: err = %v, want the HTTP limits refused", args, err)
		}
	}
}
