package jobs

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/slipway-ml/slipway"
)

// logWriter appends a run's output to its log file, one timestamped line per line of output, up to a size
// bound; followers wait on it for new lines.
type logWriter struct {
	mu      sync.Mutex
	f       *os.File
	written int64
	max     int64
	full    bool
	closed  bool
	news    broadcaster
}

func openLog(path string, max int64) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close() // nothing written through it
		return nil, err
	}
	return &logWriter{f: f, written: st.Size(), max: max, news: newBroadcaster()}, nil
}

// line records one line of the process's output: "2026-01-02T15:04:05.000Z stdout text".
func (w *logWriter) line(stream string, at time.Time, text string) {
	w.write(at.UTC().Format("2006-01-02T15:04:05.000Z") + " " + stream + " " + text + "\n")
}

// note records a line from Slipway itself.
func (w *logWriter) note(text string) { w.line("slipway", time.Now(), text) }

func (w *logWriter) write(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.full {
		return
	}
	if w.written+int64(len(s)) > w.max {
		w.full = true
		s = fmt.Sprintf("%s slipway log truncated: the log reached %d bytes; later output is dropped\n",
			time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), w.max)
	}
	n, _ := w.f.WriteString(s)
	w.written += int64(n)
	w.news.notify()
}

func (w *logWriter) wait() <-chan struct{} { return w.news.wait() }

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		_ = w.f.Close() // best effort, like every write above: each went straight to the file, unbuffered
		w.news.notify()
	}
}

// WriteLogs copies a run's log from byte offset to w. With follow it keeps copying as lines arrive until
// the run is over, ctx ends or the server shuts down (EndStreams); flush is called after each chunk.
func (s *Service) WriteLogs(ctx context.Context, id string, offset int64, w io.Writer, follow bool, flush func()) error {
	if _, err := s.store.FindJobRun(ctx, id); err != nil {
		return err
	}
	if offset < 0 {
		return slipway.Errorf(slipway.EINVALID, "offset must be ≥ 0")
	}
	off := offset
	for {
		changed := s.changed.wait()
		var news <-chan struct{}
		s.mu.Lock()
		if lw := s.logs[id]; lw != nil {
			news = lw.wait()
		}
		s.mu.Unlock()
		r, err := s.store.FindJobRun(ctx, id)
		if err != nil {
			return err
		}
		n, err := copyFrom(s.logPath(id), off, w)
		off += n
		if err != nil {
			return err
		}
		if n > 0 && flush != nil {
			flush()
		}
		if !follow || r.State.Terminal() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.streamsDone:
			return nil
		case <-changed:
		case <-news:
		}
	}
}

func copyFrom(path string, off int64, w io.Writer) (int64, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("jobs: open log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, fmt.Errorf("jobs: read log: %w", err)
	}
	n, err := io.Copy(w, f)
	if err != nil {
		return n, slipway.Wrap(slipway.EUNAVAILABLE, err, "log stream interrupted")
	}
	return n, nil
}
