package worker

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/slipway-ml/slipway"
)

// The status file is how a pod's probes see a network worker without a port of their own (with the host's
// network, each worker listens on a free port the pod spec cannot name): `slipway worker serve --status-file`
// rewrites it at every heartbeat the server accepts, `slipway worker probe` checks that it is fresh. A worker
// that has not announced itself yet is not ready; one whose heartbeats stopped being accepted is not alive.

// workerStatus is the status file's content.
type workerStatus struct {
	ID         string    `json:"id"`
	Address    string    `json:"address"`
	Pod        string    `json:"pod,omitempty"`
	Version    int       `json:"version"`
	IntervalMS int64     `json:"heartbeat_interval_ms"`
	AcceptedAt time.Time `json:"accepted_at"` // the last heartbeat the server accepted: readiness
	BeatAt     time.Time `json:"beat_at"`     // the last heartbeat sent, accepted or not: liveness
}

// missedBeats is how many heartbeat intervals the probe tolerates without an accepted heartbeat: the server
// forgets a worker after 3.
const missedBeats = 3

// statusWriter rewrites the status file after each heartbeat.
type statusWriter struct {
	path     string
	accepted time.Time
	log      *slog.Logger
}

// beat records a heartbeat; accepted says the server took it.
func (w *statusWriter) beat(ann slipway.ReplicaAnnouncement, interval time.Duration, accepted bool) {
	if w == nil || w.path == "" {
		return
	}
	now := time.Now().UTC()
	if accepted {
		w.accepted = now
	}
	b, _ := json.Marshal(workerStatus{ID: ann.ID, Address: ann.Address, Pod: ann.Pod, IntervalMS: interval.Milliseconds(),
		AcceptedAt: w.accepted, BeatAt: now, Version: ann.Version}) // plain fields always marshal
	path, log := w.path, w.log
	if err := writeFileAtomic(path, b); err != nil {
		log.Warn("write the status file (the pod's probes read it)", "path", path, "error", err)
	}
}

const probeUsage = `usage: slipway worker probe --status-file FILE [--live]

Exits 0 when the worker writing FILE (slipway worker serve --status-file FILE) had a heartbeat accepted by the
server within the last 3 heartbeat intervals (ready), 1 (with the reason) otherwise: a Kubernetes exec probe.
With --live it asks only whether the worker still sends heartbeats, accepted or not (alive: a server that is
restarting is no reason to restart the worker).`

// Probe is `slipway worker probe`.
func Probe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("slipway worker probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprintln(stderr, probeUsage) }
	path := fs.String("status-file", "", "the worker's status file")
	live := fs.Bool("live", false, "liveness: the worker sends heartbeats, accepted or not")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("slipway worker probe: --status-file is required")
	}
	st, err := readStatus(*path)
	if err != nil {
		return err
	}
	at, what := st.AcceptedAt, "accepted by the server"
	if *live {
		at, what = st.BeatAt, "sent"
	}
	age := time.Since(at)
	limit := missedBeats * time.Duration(st.IntervalMS) * time.Millisecond
	if at.IsZero() || age > limit {
		return fmt.Errorf("slipway worker probe: worker %s: no heartbeat %s for %s (more than %d intervals of %dms)", st.ID, what, age.Round(time.Millisecond), missedBeats, st.IntervalMS)
	}
	_, _ = fmt.Fprintf(stdout, "worker %s at %s: heartbeat %s %s ago\n", st.ID, st.Address, what, age.Round(time.Millisecond))
	return nil
}

func readStatus(path string) (workerStatus, error) {
	var st workerStatus
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("slipway worker probe: %s does not exist yet: the worker has not announced itself to the server", path)
	}
	if err != nil {
		return st, fmt.Errorf("slipway worker probe: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("slipway worker probe: %s: %w", path, err)
	}
	return st, nil
}
