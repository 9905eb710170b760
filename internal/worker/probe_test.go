package worker

import (
	"bytes"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestProbeReadsTheStatusFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	probe := func(args ...string) error {
		var out bytes.Buffer
		return Probe(append([]string{"--status-file", path}, args...), &out, &out)
	}
	if err := probe(); err == nil || !strings.Contains(err.Error(), "has not announced itself") {
		t.Fatalf("before the first heartbeat: %v", err)
	}
	ann := slipway.ReplicaAnnouncement{ID: "w1", Address: "127.0.0.1:1", Version: 1}
	w := &statusWriter{path: path, log: slog.New(slog.DiscardHandler)}
	interval := 50 * time.Millisecond

	// Heartbeats sent but refused or unanswered: alive, not ready.
	w.beat(ann, interval, false)
	if err := probe(); err == nil {
		t.Fatal("ready without an accepted heartbeat")
	}
	if err := probe("--live"); err != nil {
		t.Fatalf("live: %v", err)
	}
	w.beat(ann, interval, true)
	if err := probe(); err != nil {
		t.Fatalf("ready after an accepted heartbeat: %v", err)
	}
	// No heartbeat for more than 3 intervals: neither.
	time.Sleep(4 * interval)
	for _, args := range [][]string{nil, {"--live"}} {
		if err := probe(args...); err == nil || !strings.Contains(err.Error(), "more than 3 intervals") {
			t.Errorf("probe %v after the heartbeats stopped: %v", args, err)
		}
	}
}

func TestAdvertiseAddr(t *testing.T) {
	listening := &net.TCPAddr{IP: net.IPv4(0, 0, 0, 0), Port: 4321}
	for flag, want := range map[string]string{
		"":              "0.0.0.0:4321",
		"10.0.0.7:0":    "10.0.0.7:4321",
		"10.0.0.7:7070": "10.0.0.7:7070",
	} {
		if got, err := advertiseAddr(flag, listening); err != nil || got != want {
			t.Errorf("advertiseAddr(%q) = %q, %v; want %q", flag, got, err, want)
		}
	}
	if _, err := advertiseAddr("no-port", listening); err == nil {
		t.Error("an --advertise without a port was taken")
	}
}
