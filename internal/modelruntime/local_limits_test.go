package modelruntime

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/executor"
)

// The test binary doubles as the exec-limited shim, as the server's own binary does.
const shimArg = "exec-limited-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == shimArg {
		if err := executor.ExecLimited(os.Args[2:]); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(127)
		}
	}
	os.Exit(m.Run())
}

// startLocal runs script under sh on a LocalEngine with the shim, and returns what it wrote to stdout and
// stderr once it exited.
func startLocal(t *testing.T, e LocalEngine, res *slipway.Resources, script string) (stdout, stderr string, err error) {
	t.Helper()
	var mu sync.Mutex
	var errLines []string
	conn, err := e.Start(context.Background(), ProcessSpec{Path: "/bin/sh", Args: []string{"-c", script},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), Resources: res}, func(line string) {
		mu.Lock()
		errLines = append(errLines, line)
		mu.Unlock()
	})
	if err != nil {
		return "", "", err
	}
	t.Cleanup(conn.Kill)
	conn.Close() // no input
	out, _ := io.ReadAll(conn)
	<-conn.Done()
	mu.Lock()
	defer mu.Unlock()
	return string(out), strings.Join(errLines, "\n"), conn.ExitErr()
}

// A replica's memory_mb is its address-space limit from its first instruction (set by the shim before the
// exec), and a model that allocates beyond it gets Python's MemoryError; the same allocation within the limit
// succeeds.
func TestLocalEngineLimitsReplicaMemory(t *testing.T) {
	e := LocalEngine{Shim: []string{os.Args[0], shimArg}}
	out, _, err := startLocal(t, e, &slipway.Resources{MemoryMB: 300, CPU: 1}, "ulimit -v")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := strconv.Atoi(strings.TrimSpace(out)); got != 300*1024 {
		t.Fatalf("ulimit -v in the replica = %q KiB, want %d", out, 300*1024)
	}
	out, _, err = startLocal(t, e, nil, "ulimit -v")
	if err != nil || strings.TrimSpace(out) == strconv.Itoa(300*1024) {
		t.Fatalf("without resources: ulimit -v = %q, %v", out, err)
	}

	alloc := `exec python3 -c 'b = bytearray(256 << 20); print("allocated", len(b))'`
	for _, tc := range []struct {
		name     string
		memoryMB int64
		ok       bool
	}{{"beyond", 128, false}, {"within", 1024, true}} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := startLocal(t, e, &slipway.Resources{MemoryMB: tc.memoryMB}, alloc)
			if tc.ok && (err != nil || !strings.Contains(out, "allocated")) {
				t.Fatalf("within the limit: out %q, stderr %q, %v", out, stderr, err)
			}
			if !tc.ok && (err == nil || !strings.Contains(stderr, "MemoryError")) {
				t.Fatalf("beyond the limit: err %v, stderr %q, want MemoryError", err, stderr)
			}
		})
	}
}

// Without a shim the engine refuses a memory limit rather than run the replica unlimited.
func TestLocalEngineWithoutShimRefusesAMemoryLimit(t *testing.T) {
	_, _, err := startLocal(t, LocalEngine{}, &slipway.Resources{MemoryMB: 512}, "true")
	if slipway.ErrorCode(err) != slipway.EUNAVAILABLE || !strings.Contains(err.Error(), "memory_mb") {
		t.Fatalf("err = %v, want EUNAVAILABLE naming memory_mb", err)
	}
	if _, _, err := startLocal(t, LocalEngine{}, &slipway.Resources{CPU: 0.5}, "true"); err != nil {
		t.Fatalf("cpu only (not applied locally) = %v, want started", err)
	}
}
