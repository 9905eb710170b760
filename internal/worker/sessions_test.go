package worker

import (
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

// pythonModel writes a score.py that answers its worker pid and, for {"sleep": s}, sleeps first.
func pythonModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	score := `import os, time
def load_model():
    return None
def predict(data, model=None):
    if isinstance(data, dict) and data.get("sleep"):
        time.sleep(data["sleep"])
    return {"pid": os.getpid(), "echo": data.get("n") if isinstance(data, dict) else None}
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

type pidAnswer struct {
	PID  int `json:"pid"`
	Echo int `json:"echo"`
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
	addr, spec := startSessionServer(t, startPython(t), 8)
	a, _, err := dialSession(t, addr, spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := dialSession(t, addr, spec)
	if err != nil {
		t.Fatal(err)
	}
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
	addr, spec := startSessionServer(t, startPython(t), 8)
	a, aConn, err := dialSession(t, addr, spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := dialSession(t, addr, spec)
	if err != nil {
		t.Fatal(err)
	}
	first, err := predictPID(b, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	// Session a's call hangs in predict(); the server gives up on it (its timeout kills the session).
	hung := make(chan error, 1)
	go func() {
		_, err := predictPID(a, 2, `, "sleep": 600`)
		hung <- err
	}()
	time.Sleep(300 * time.Millisecond) // let the call reach the model (if it did not, b's call below still passes)
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
		t.Logf("the call did not reach the model before the session ended (same process %d)", got.PID)
	}
}
