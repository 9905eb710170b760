package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx"
	"github.com/slipway-ml/slipway/internal/modelruntime/onnx/onnxtest"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// startSessionServer serves model on a loopback listener as `slipway worker serve` does (handshake, session
// bound), stopped at cleanup.
func startSessionServer(t *testing.T, model sessionModel, maxSessions int) (string, slipway.ReplicaSpec) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spec := slipway.ReplicaSpec{Deployment: "d", Version: 1, Secret: []byte("0123456789abcdef0123456789abcdef")}
	s := &server{spec: spec, model: model, log: slog.New(slog.DiscardHandler), ln: ln, sessions: map[net.Conn]struct{}{}, maxSessions: maxSessions}
	done := make(chan struct{})
	go func() { defer close(done); s.acceptLoop() }()
	t.Cleanup(func() {
		_ = ln.Close()
		s.closeSessions()
		<-done
		model.Close()
	})
	return ln.Addr().String(), spec
}

// dialSession opens a session as the server's RemoteEngine does; the hello's error, if any, is returned.
func dialSession(t *testing.T, addr string, spec slipway.ReplicaSpec) (*workerproto.Client, net.Conn, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := workerproto.DialReplicaConn(conn, spec.Secret, spec.Deployment, spec.Version); err != nil {
		t.Fatal(err)
	}
	c := workerproto.NewClient(conn, conn)
	_, err = c.ReadHello()
	return c, conn, err
}

func TestWorkerServesSeveralSessionsONNX(t *testing.T) {
	onnxtest.Init(t)
	om, err := loadONNX(t.Context(), onnxtest.BuildClassifier(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	model := &onnxSession{handler: &onnx.Handler{Model: om}, hello: workerproto.Hello{OK: true, Runtime: "onnx", Inputs: om.Inputs(), Outputs: om.Outputs()}}
	addr, spec := startSessionServer(t, model, 3)
	var clients []*workerproto.Client
	for range 3 {
		c, _, err := dialSession(t, addr, spec)
		if err != nil {
			t.Fatalf("session %d refused: %v", len(clients)+1, err)
		}
		clients = append(clients, c)
	}
	// A fourth is over --max-sessions: refused with a failed hello that says why.
	if _, _, err := dialSession(t, addr, spec); err == nil || !strings.Contains(err.Error(), "--max-sessions") {
		t.Fatalf("fourth session: %v, want a refusal naming --max-sessions", err)
	}
	// The three sessions call at once, and each gets the classifier's answers (checkClassifier compares
	// them with numpy's).
	t.Run("calls at once", func(t *testing.T) {
		for i, c := range clients {
			t.Run(fmt.Sprint("session ", i), func(t *testing.T) {
				t.Parallel()
				for range 20 {
					checkClassifier(t, c)
				}
			})
		}
	})
	// A session that ends frees its place.
	clients[0].Close()
	deadline := time.Now().Add(time.Minute)
	for {
		_, _, err := dialSession(t, addr, spec)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after a session ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pythonModel writes a score.py that answers its worker pid. A request may ask it first to create a file
// ("mark"), wait for a file to exist ("until"), then to report whether another request reaches the harness's
// stdin while this one is in predict() ("probe"), to exit ("exit") or to sleep ("sleep", seconds).
func pythonModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	score := `import os, select, time
def load_model():
    return None
def predict(data, model=None):
    if data.get("mark"):
        open(data["mark"], "w").close()
    if data.get("until"):
        while not os.path.exists(data["until"]):
            time.sleep(0.01)
    if data.get("probe"):
        readable, _, _ = select.select([0], [], [], 30)
        return {"pid": os.getpid(), "echo": data.get("n"), "pipelined": bool(readable)}
    if data.get("exit"):
        os._exit(3)
    if data.get("sleep"):
        time.sleep(data["sleep"])
    return {"pid": os.getpid(), "echo": data.get("n")}
`
	if err := os.WriteFile(filepath.Join(dir, "score.py"), []byte(score), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startPython(t *testing.T) *pythonSessions {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	cfg := &serveConfig{python: "/usr/bin/python3", cacheDir: t.TempDir(), scheduling: "normal"}
	p, err := startPythonSessions(t.Context(), cfg, pythonModel(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pythonPair is a Python model served from one harness, as `slipway worker serve` does, and two sessions to it.
type pythonPair struct {
	p     *pythonSessions
	addr  string
	spec  slipway.ReplicaSpec
	a, b  *workerproto.Client
	aConn net.Conn
}

func twoPythonSessions(t *testing.T) pythonPair {
	t.Helper()
	s := pythonPair{p: startPython(t)}
	s.addr, s.spec = startSessionServer(t, s.p, 8)
	var err error
	if s.a, s.aConn, err = dialSession(t, s.addr, s.spec); err != nil {
		t.Fatal(err)
	}
	if s.b, _, err = dialSession(t, s.addr, s.spec); err != nil {
		t.Fatal(err)
	}
	return s
}

type pidAnswer struct {
	PID       int  `json:"pid"`
	Echo      int  `json:"echo"`
	Pipelined bool `json:"pipelined"`
}

func predictPID(c *workerproto.Client, n int, extra string) (pidAnswer, error) {
	out, err := c.PredictJSON(fmt.Appendf(nil, `{"n": %d%s}`, n, extra))
	if err != nil {
		return pidAnswer{}, err
	}
	var a pidAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		return pidAnswer{}, fmt.Errorf("answer %s: %w", out, err)
	}
	return a, nil
}

func TestWorkerPythonSessionsShareOneHarness(t *testing.T) {
	s := twoPythonSessions(t)
	a, b := s.a, s.b
	// Both sessions call at once: every answer is its own request's (no mix-up between sessions), and one
	// model process answers them all.
	pids := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, c := range []*workerproto.Client{a, b} {
		wg.Go(func() {
			for n := range 30 {
				want := i*1000 + n
				got, err := predictPID(c, want, "")
				if err != nil {
					t.Error(err)
					return
				}
				if got.Echo != want {
					t.Errorf("session %d asked %d, got the answer to %d", i, want, got.Echo)
				}
				mu.Lock()
				pids[got.PID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(pids) != 1 {
		t.Fatalf("answered by %d model processes %v, want one shared", len(pids), pids)
	}
}

func TestWorkerPythonSessionEndingMidCallSparesTheOthers(t *testing.T) {
	s := twoPythonSessions(t)
	a, aConn, b := s.a, s.aConn, s.b
	first, err := predictPID(b, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	// Session a's call hangs in predict(); the server gives up on it (its timeout kills the session).
	hung := hangInPredict(t, a)
	_ = aConn.Close()
	if err := <-hung; err == nil {
		t.Fatal("the hung call answered after its session was closed")
	}
	// b's next call is answered (by a new model process: the stuck one was killed), not stuck behind a's.
	got, err := predictPID(b, 3, "")
	if err != nil {
		t.Fatalf("session b after a's session ended mid-call: %v", err)
	}
	if got.Echo != 3 {
		t.Fatalf("session b got the answer to %d, want 3", got.Echo)
	}
	if got.PID == first.PID {
		t.Fatalf("b was answered by the process stuck in a's call (%d)", got.PID)
	}
}

// waitForFile waits until the model has created path (its "mark").
func waitForFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the model never created %s", path)
		}
	}
}

// waitForLine waits until the serving child has n calls in flight (their frames written to it).
func waitForLine(t *testing.T, p *pythonSessions, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		p.mu.Lock()
		got := 0
		if p.child != nil {
			got = len(p.child.calls)
		}
		p.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child has %d calls in flight, want %d", got, n)
		}
	}
}

// hangInPredict starts a call of session c that sleeps in predict() for 600 s and returns once the call is there;
// the channel gets the call's error when its session ends.
func hangInPredict(t *testing.T, c *workerproto.Client) <-chan error {
	t.Helper()
	mark := filepath.Join(t.TempDir(), "in-predict")
	hung := make(chan error, 1)
	go func() {
		_, err := predictPID(c, 1, `, "sleep": 600, "mark": `+jsonString(mark))
		hung <- err
	}()
	waitForFile(t, mark)
	return hung
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// A call reaches the model process while the one before it is still in predict(), as with a local replica:
// the worker does not wait for an answer before it sends the next request.
func TestWorkerPythonPipelinesCalls(t *testing.T) {
	s := twoPythonSessions(t)
	a, b := s.a, s.b
	mark := filepath.Join(t.TempDir(), "in-predict")
	for _, second := range []*workerproto.Client{a, b} { // the next call from the same session, then from another
		_ = os.Remove(mark)
		first := make(chan pidAnswer, 1)
		go func() {
			got, err := predictPID(a, 1, `, "probe": true, "mark": `+jsonString(mark))
			if err != nil {
				t.Error(err)
			}
			first <- got
		}()
		waitForFile(t, mark)
		got, err := predictPID(second, 2, "")
		if err != nil {
			t.Fatal(err)
		}
		probe := <-first
		if got.Echo != 2 || probe.Echo != 1 {
			t.Fatalf("answers %+v and %+v, want the answers to 1 and 2", probe, got)
		}
		if !probe.Pipelined {
			t.Fatal("the second request did not reach the model process while the first was in predict(): calls are not pipelined")
		}
	}
}

// Calls queued behind one whose session ended while it was in predict() are answered by a new model process,
// in order, not failed with it.
func TestWorkerPythonSessionEndingMidCallMovesTheQueuedCalls(t *testing.T) {
	s := twoPythonSessions(t)
	p, a, aConn, b := s.p, s.a, s.aConn, s.b
	before, err := predictPID(b, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	hung := hangInPredict(t, a)
	queued := make([]chan pidAnswer, 3)
	for i := range queued {
		queued[i] = make(chan pidAnswer, 1)
		go func() {
			got, err := predictPID(b, 10+i, "")
			if err != nil {
				t.Errorf("b's queued call %d: %v", 10+i, err)
			}
			queued[i] <- got
		}()
		waitForLine(t, p, 2+i) // in this order on the child
	}
	_ = aConn.Close() // the server gives up on a's call
	if err := <-hung; err == nil {
		t.Fatal("the hung call answered after its session was closed")
	}
	for i, ch := range queued {
		got := <-ch
		if got.Echo != 10+i {
			t.Fatalf("b's call %d got the answer to %d", 10+i, got.Echo)
		}
		if got.PID == before.PID {
			t.Fatalf("b's call %d was answered by the killed process %d", 10+i, got.PID)
		}
	}
}

// A model process that dies in predict() fails that call's session only; the calls behind it go to a new one.
func TestWorkerPythonCrashFailsOnlyItsCall(t *testing.T) {
	s := twoPythonSessions(t)
	p, a, b := s.p, s.a, s.b
	dir := t.TempDir()
	mark, release := filepath.Join(dir, "in-predict"), filepath.Join(dir, "go")
	crashed := make(chan error, 1)
	go func() {
		_, err := predictPID(a, 1, `, "exit": true, "mark": `+jsonString(mark)+`, "until": `+jsonString(release))
		crashed <- err
	}()
	waitForFile(t, mark)
	queued := make(chan pidAnswer, 1)
	go func() {
		got, err := predictPID(b, 2, "")
		if err != nil {
			t.Errorf("b's queued call: %v", err)
		}
		queued <- got
	}()
	waitForLine(t, p, 2)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-crashed; err == nil {
		t.Fatal("the call the model process died on answered")
	}
	if got := <-queued; got.Echo != 2 || got.PID == 0 {
		t.Fatalf("b's queued call: %+v, want the answer to 2", got)
	}
	// a's session ended with its call; a new one is served by the new process.
	a2, _, err := dialSession(t, s.addr, s.spec)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := predictPID(a2, 3, ""); err != nil || got.Echo != 3 {
		t.Fatalf("a new session after the crash: %+v, %v", got, err)
	}
}

// A server's health check of a replica it is not using is answered while the model process is busy with another
// server's calls, not queued behind them (where a slow model's line would outlast the check's timeout). A ping
// of a session with calls of its own in flight still comes after them.
func TestWorkerPythonPingOfAnIdleSessionIsNotQueued(t *testing.T) {
	s := twoPythonSessions(t)
	a, aConn, b := s.a, s.aConn, s.b
	hung := hangInPredict(t, a)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // queued, it would wait the 600 s of a's call
	defer cancel()
	if err := b.PingContext(ctx); err != nil {
		t.Fatalf("b's ping while a's call is in predict(): %v", err)
	}
	// a's own ping follows its call: it is not answered before the call is.
	pinged := make(chan error, 1)
	go func() { pinged <- a.Ping() }()
	waitForLine(t, s.p, 2)
	_ = aConn.Close()
	if err := <-hung; err == nil {
		t.Fatal("the hung call answered after its session was closed")
	}
	if err := <-pinged; err == nil {
		t.Fatal("a's ping was answered although it came after a call that never was")
	}
	if err := b.Ping(); err != nil { // the model process is idle now (a new one): the ping goes to it
		t.Fatalf("b's ping afterwards: %v", err)
	}
}

// The call a model process dies on is the first one not answered: a quick answer before it is not held back in
// the process (the harness runs with --hold-ns 0 here), or it would die with it and its call take the blame (an
// OOM kill reported to the wrong request, the real culprit sent to the next process).
func TestWorkerPythonCrashBlamesTheRightCall(t *testing.T) {
	s := twoPythonSessions(t)
	p, a, b := s.p, s.a, s.b
	dir := t.TempDir()
	gate, mark := filepath.Join(dir, "go"), filepath.Join(dir, "in-predict")
	first, second := make(chan error, 1), make(chan pidAnswer, 1)
	go func() { // b's first call waits in predict() until the other two are queued behind it
		_, err := predictPID(b, 1, `, "mark": `+jsonString(mark)+`, "until": `+jsonString(gate))
		first <- err
	}()
	waitForFile(t, mark)
	go func() {
		got, err := predictPID(b, 2, "") // quick, with a's call already read behind it
		if err != nil {
			t.Errorf("b's quick call before the crash: %v", err)
		}
		second <- got
	}()
	waitForLine(t, p, 2)
	crashed := make(chan error, 1)
	go func() {
		_, err := predictPID(a, 3, `, "exit": true`)
		crashed <- err
	}()
	waitForLine(t, p, 3)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatalf("b's first call: %v", err)
	}
	if got := <-second; got.Echo != 2 {
		t.Fatalf("b's second call: %+v, want the answer to 2", got)
	}
	if err := <-crashed; err == nil {
		t.Fatal("the call the process died on answered")
	}
	if got, err := predictPID(b, 4, ""); err != nil || got.Echo != 4 {
		t.Fatalf("b after a's crash: %+v, %v (b's session must not have been blamed)", got, err)
	}
}
