package slipway

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseBytes reads a size given by a person: 1073741824, 512MiB, 2GiB, 500MB (the CLI's --memory, the
// server's --model-memory-budget).
func ParseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
			if err != nil || v <= 0 {
				break
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil && v > 0 {
		return v, nil
	}
	return 0, fmt.Errorf("invalid size %q: use bytes or a unit (512MiB, 2GiB)", s)
}
