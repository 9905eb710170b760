package slipway

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1073741824": 1 << 30, "512MiB": 512 << 20, "2GiB": 2 << 30, "1.5GiB": 3 << 29,
		"500MB": 500e6, "64KiB": 64 << 10, "3kB": 3000, "10B": 10, "8 GiB": 8 << 30} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "lots", "GiB", "-2MiB", "1TiB"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
}
