//go:build race

package inference

// raceEnabled: under the race detector sync.Pool drops a share of what is put back on purpose, so a function
// that reuses pooled state (encoding/json's scanner) allocates now and then. Allocation counts are measured
// without it.
const raceEnabled = true
