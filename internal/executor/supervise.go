package executor

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A supervised process outlives the server that started it. Between the server and the program sits
// `slipway exec-supervise`: it leads the process group, reads the program's output into a spool file and, when
// the program exits, writes how into an exit file. The server tails the spool; after a restart it re-attaches
// (Recover) from the spool offset it had reached, and a program that ended while no server was running still
// reports its real exit. Files in the run's state folder:
const (
	spoolFile  = "output.spool"  // "<unix ns> <stream> <line>\n" per line, appended by the supervisor
	offsetFile = "output.offset" // how far the server has read the spool (decimal bytes)
	exitFile   = "exit.json"     // the program's Exit, written once it has ended (temp + rename)
	superLog   = "supervisor.log"
)

// removeStateFiles removes a supervised process's files from its state folder.
func removeStateFiles(dir string) {
	for _, f := range []string{spoolFile, offsetFile, exitFile, superLog} {
		_ = os.Remove(filepath.Join(dir, f)) // usually missing already; the folder is the run's own
	}
}

// Supervise is `slipway exec-supervise --spool=FILE --exit=FILE [--max-bytes=N] -- PROGRAM ARGS...`, started by
// the executor as the leader of a run's process group. It returns once the program has ended and its exit is
// recorded. Output beyond --max-bytes (default 64 MiB) is read and dropped, so that a chatty program cannot
// fill the disk through the spool.
func Supervise(args []string) error {
	var spoolPath, exitPath string
	maxBytes := int64(defaultMaxSpool)
	i := 0
	for ; i < len(args) && args[i] != "--"; i++ {
		var err error
		switch {
		case strings.HasPrefix(args[i], "--spool="):
			spoolPath = strings.TrimPrefix(args[i], "--spool=")
		case strings.HasPrefix(args[i], "--exit="):
			exitPath = strings.TrimPrefix(args[i], "--exit=")
		case strings.HasPrefix(args[i], "--max-bytes="):
			maxBytes, err = strconv.ParseInt(strings.TrimPrefix(args[i], "--max-bytes="), 10, 64)
			if err == nil && maxBytes <= 0 {
				err = errors.New("not positive")
			}
		default:
			err = errors.New("unknown flag")
		}
		if err != nil {
			return fmt.Errorf("exec-supervise: bad flag %q (%v): want --spool=FILE, --exit=FILE and --max-bytes=N", args[i], err)
		}
	}
	if spoolPath == "" || exitPath == "" || i+1 >= len(args) {
		return errors.New("usage: exec-supervise --spool=FILE --exit=FILE -- PROGRAM [ARGS...]")
	}
	spool, err := os.OpenFile(spoolPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("exec-supervise: %w", err)
	}
	defer spool.Close()
	// A stop signals the whole group: the program acts on it, the supervisor stays to record the exit. The
	// signals are caught, not ignored: an ignored signal would stay ignored in the program too.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	defer signal.Stop(signals)

	exit := runSupervised(args[i+1:], spool, maxBytes)
	return writeExit(exitPath, exit)
}

// defaultMaxSpool bounds a spool when the executor does not say (jobs pass their log limit).
const defaultMaxSpool = 64 << 20

// runSupervised runs the program with its output appended to spool (up to maxBytes) and returns how it ended.
func runSupervised(argv []string, spool *os.File, maxBytes int64) Exit {
	outR, outW, err := os.Pipe()
	if err != nil {
		return Exit{Code: -1, Signal: "pipe: " + err.Error()}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return Exit{Code: -1, Signal: "pipe: " + err.Error()}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Start()
	closeAll(outW, errW) // the program holds its own copies
	if err != nil {
		closeAll(outR, errR)
		return Exit{Code: 127, LastLine: "cannot start " + argv[0] + ": " + err.Error()}
	}
	var mu sync.Mutex
	var written int64
	write := func(stream string, at time.Time, line string) {
		mu.Lock()
		defer mu.Unlock()
		rec := strconv.FormatInt(at.UnixNano(), 10) + " " + stream + " " + line + "\n"
		switch {
		case written > maxBytes:
			return
		case written+int64(len(rec)) > maxBytes:
			rec = fmt.Sprintf("%d slipway output beyond %d bytes is dropped\n", at.UnixNano(), maxBytes)
			written = maxBytes
		}
		n, _ := spool.WriteString(rec)
		written += int64(n)
	}
	var lastOut, lastErr lastLine
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); readLines(outR, "stdout", write, &lastOut) }() // ends at EOF or close
	go func() { defer readers.Done(); readLines(errR, "stderr", write, &lastErr) }()
	state, werr := cmd.Process.Wait()
	drainOrClose(&readers, outR, errR)
	exit := exitOf(state, werr)
	if exit.LastLine = lastErr.get(); exit.LastLine == "" {
		exit.LastLine = lastOut.get()
	}
	return exit
}

// drainOrClose waits for the readers to reach EOF, or closes their pipes after drainTimeout: a descendant
// that escaped the process group (setsid) may hold the pipes open forever.
func drainOrClose(readers *sync.WaitGroup, pipes ...io.Closer) {
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		closeAll(pipes...)
		<-drained
	}
	closeAll(pipes...)
}

func writeExit(path string, exit Exit) error {
	b, err := json.Marshal(exit)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("exec-supervise: record the exit: %w", err)
	}
	return os.Rename(tmp, path)
}

func readExit(dir string) (Exit, bool) {
	b, err := os.ReadFile(filepath.Join(dir, exitFile))
	if err != nil {
		return Exit{}, false
	}
	var e Exit
	if json.Unmarshal(b, &e) != nil {
		return Exit{}, false
	}
	return e, true
}

// spoolTail delivers the spool's complete lines from an offset, and records the offset it reached so that
// the next server continues there (lines delivered just before a crash may be delivered twice, never lost).
type spoolTail struct {
	dir    string
	offset int64
	out    func(stream string, at time.Time, line string)
}

func newSpoolTail(dir string, out func(string, time.Time, string)) *spoolTail {
	t := &spoolTail{dir: dir, out: out}
	if b, err := os.ReadFile(filepath.Join(dir, offsetFile)); err == nil {
		t.offset, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	return t
}

// poll delivers the lines appended since the last poll; with final, a last line without its newline too.
func (t *spoolTail) poll(final bool) {
	f, err := os.Open(filepath.Join(t.dir, spoolFile))
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		return
	}
	br := bufio.NewReaderSize(f, maxLine+64)
	start := t.offset
	for {
		b, err := br.ReadSlice('\n')
		piece := errors.Is(err, bufio.ErrBufferFull) // a record longer than the buffer: deliver it in pieces
		if len(b) == 0 || (err != nil && !piece && !final) {
			break // an incomplete last line waits for its end
		}
		t.offset += int64(len(b))
		t.deliver(strings.TrimRight(string(b), "\n"))
		if err != nil && !piece {
			break
		}
	}
	if t.offset != start {
		// Best effort: without it, a server that re-attaches after a restart delivers these lines again.
		_ = os.WriteFile(filepath.Join(t.dir, offsetFile), []byte(strconv.FormatInt(t.offset, 10)), 0o644)
	}
}

func (t *spoolTail) deliver(rec string) {
	f := strings.SplitN(rec, " ", 3)
	if len(f) < 3 {
		f = append(f, "", "")[:3]
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	at := time.Unix(0, ns)
	if err != nil {
		at = time.Now()
	}
	t.out(f[1], at, f[2])
}
