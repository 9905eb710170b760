package workerproto

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate is a Handler whose JSON calls named "hold…" wait until it is opened; every other call answers at once.
// It records the order in which the calls reached it.
type gate struct {
	open chan struct{}
	mu   sync.Mutex
	seen []string
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) PredictJSON(body []byte) ([]byte, error) {
	g.mu.Lock()
	g.seen = append(g.seen, string(body))
	g.mu.Unlock()
	if strings.HasPrefix(string(body), `"hold`) {
		<-g.open
	}
	if strings.HasPrefix(string(body), `"raise`) {
		return nil, &ModelError{Message: "raised on " + string(body), Type: "ValueError"}
	}
	return []byte(`{"echo":` + string(body) + `}`), nil
}

func (g *gate) PredictTensors(in []Tensor) ([]Tensor, error) { return in, nil }

// order is the calls the replica has seen, in order.
func (g *gate) order() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.seen, ",")
}

// osPipes makes a child's stdin (reqR, reqW) and stdout (respR, respW) as OS pipes.
func osPipes(t *testing.T) (reqR, reqW, respR, respW *os.File) {
	t.Helper()
	var err error
	if reqR, reqW, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	if respR, respW, err = os.Pipe(); err != nil {
		t.Fatal(err)
	}
	return reqR, reqW, respR, respW
}

// startServeOS connects a Client to Serve over two OS pipes: unlike io.Pipe they buffer, so frames written
// while the child is busy wait in the pipe as they do with a real replica. stopChild closes the child's end of
// its stdout (as a dying child does).
func startServeOS(t *testing.T, h Handler) (c *Client, stopChild func()) {
	t.Helper()
	reqR, reqW, respR, respW := osPipes(t)
	done := make(chan error, 1)
	go func() {
		err := Serve(reqR, respW, testHello, h)
		respW.Close()
		reqR.Close()
		done <- err
	}()
	c = NewClient(reqW, respR)
	var once sync.Once
	stopChild = func() { once.Do(func() { respW.Close(); reqR.Close() }) }
	t.Cleanup(func() {
		c.Close()
		<-done
		respR.Close()
	})
	if _, err := c.ReadHello(); err != nil {
		t.Fatal(err)
	}
	return c, stopChild
}

// waitInFlight waits until n calls are in flight on c (written, answer not read).
func waitInFlight(t *testing.T, c *Client, n int) {
	t.Helper()
	for range 2000 {
		c.mu.Lock()
		got := len(c.pending)
		c.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("never %d calls in flight", n)
}

type answer struct {
	out []byte
	err error
}

// callAsync starts PredictJSONContext in a goroutine and returns where its answer arrives.
func callAsync(ctx context.Context, c *Client, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		out, err := c.PredictJSONContext(ctx, []byte(body))
		ch <- answer{out, err}
	}()
	return ch
}

// TestClientPipelinesInOrder: calls made while the replica is busy are all written at once, reach the replica in
// the order written and each gets its own answer.
func TestClientPipelinesInOrder(t *testing.T) {
	g := newGate()
	c, _ := startServeOS(t, g)
	first := callAsync(context.Background(), c, `"hold"`)
	waitInFlight(t, c, 1)
	const n = 16
	answers := make([]<-chan answer, n)
	for i := range answers {
		answers[i] = callAsync(context.Background(), c, fmt.Sprint(i))
		waitInFlight(t, c, i+2) // one at a time, so that the order written is known
	}
	close(g.open)
	if a := <-first; a.err != nil || string(a.out) != `{"echo":"hold"}` {
		t.Fatalf("first call: %q, %v", a.out, a.err)
	}
	for i, ch := range answers {
		if a := <-ch; a.err != nil || string(a.out) != fmt.Sprintf(`{"echo":%d}`, i) {
			t.Fatalf("call %d got %q, %v", i, a.out, a.err)
		}
	}
	if got := g.order(); got != `"hold",0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15` {
		t.Fatalf("the replica saw %s", got)
	}
}

// TestClientModelErrorMidPipeline: a model error answers its own call only; the calls around it and a ping
// queued behind them get their own answers.
func TestClientModelErrorMidPipeline(t *testing.T) {
	g := newGate()
	c, _ := startServeOS(t, g)
	first := callAsync(context.Background(), c, `"hold"`)
	waitInFlight(t, c, 1)
	bad := callAsync(context.Background(), c, `"raise"`)
	waitInFlight(t, c, 2)
	pong := make(chan error, 1)
	go func() { pong <- c.PingContext(context.Background()) }()
	waitInFlight(t, c, 3)
	good := callAsync(context.Background(), c, `2`)
	waitInFlight(t, c, 4)
	close(g.open)
	if a := <-first; a.err != nil {
		t.Fatalf("first call: %v", a.err)
	}
	var me *ModelError
	if a := <-bad; !errors.As(a.err, &me) || me.Message != `raised on "raise"` {
		t.Fatalf("the raising call got %q, %v", a.out, a.err)
	}
	if err := <-pong; err != nil {
		t.Fatalf("ping behind a model error: %v", err)
	}
	if a := <-good; a.err != nil || string(a.out) != `{"echo":2}` {
		t.Fatalf("the call after the error got %q, %v", a.out, a.err)
	}
}

// TestClientStreamFailureFailsAllInFlight: when the replica's stream ends, every call in flight fails with the
// same error, and so does every later call.
func TestClientStreamFailureFailsAllInFlight(t *testing.T) {
	g := newGate()
	c, stopChild := startServeOS(t, g)
	var answers []<-chan answer
	for i := range 3 {
		answers = append(answers, callAsync(context.Background(), c, `"hold`+fmt.Sprint(i)+`"`))
		waitInFlight(t, c, i+1)
	}
	stopChild()
	var first error
	for i, ch := range answers {
		a := <-ch
		if a.err == nil || !strings.Contains(a.err.Error(), "closed its stdout") {
			t.Fatalf("call %d in flight got %q, %v", i, a.out, a.err)
		}
		if first == nil {
			first = a.err
		} else if a.err != first {
			t.Fatalf("call %d got %v, want the same error as the first, %v", i, a.err, first)
		}
	}
	if err := c.Ping(); err != first {
		t.Fatalf("a later call got %v, want the sticky %v", err, first)
	}
	close(g.open)
}

// TestClientCloseWithCallsInFlight: Close does not cut the calls already sent: the replica answers what it read
// before its input ended. Later calls get ErrClosed.
func TestClientCloseWithCallsInFlight(t *testing.T) {
	g := newGate()
	c, _ := startServeOS(t, g)
	first := callAsync(context.Background(), c, `"hold"`)
	waitInFlight(t, c, 1)
	second := callAsync(context.Background(), c, `2`)
	waitInFlight(t, c, 2)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call after Close got %v, want ErrClosed", err)
	}
	close(g.open)
	if a := <-first; a.err != nil || string(a.out) != `{"echo":"hold"}` {
		t.Fatalf("first call: %q, %v", a.out, a.err)
	}
	if a := <-second; a.err != nil || string(a.out) != `{"echo":2}` {
		t.Fatalf("second call: %q, %v", a.out, a.err)
	}
}

// TestClientAbandonedCall: a call whose context ends returns at once; its answer is dropped when it arrives, and
// the next call gets its own answer, not the abandoned one's. Started says whether the replica was on it.
func TestClientAbandonedCall(t *testing.T) {
	g := newGate()
	c, _ := startServeOS(t, g)
	headCtx, cancelHead := context.WithCancel(context.Background())
	head := callAsync(headCtx, c, `"hold"`)
	waitInFlight(t, c, 1)
	queuedCtx, cancelQueued := context.WithCancel(context.Background())
	queued := callAsync(queuedCtx, c, `"queued"`)
	waitInFlight(t, c, 2)

	cancelQueued()
	var ab *AbandonedError
	if a := <-queued; !errors.As(a.err, &ab) || ab.Started || !errors.Is(a.err, context.Canceled) {
		t.Fatalf("a call abandoned behind another got %q, %v (%+v)", a.out, a.err, ab)
	}
	cancelHead()
	if a := <-head; !errors.As(a.err, &ab) || !ab.Started {
		t.Fatalf("a call abandoned while the replica worked on it got %q, %v (%+v)", a.out, a.err, ab)
	}
	close(g.open)
	if out, err := c.PredictJSON([]byte(`3`)); err != nil || string(out) != `{"echo":3}` {
		t.Fatalf("the call after two abandoned ones got %q, %v", out, err)
	}
	if got := g.order(); got != `"hold","queued",3` {
		t.Fatalf("the replica saw %s", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.PredictJSONContext(ctx, []byte(`4`)); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call made with an ended context got %v", err)
	}
	if got := g.order(); got != `"hold","queued",3` {
		t.Fatalf("a call made with an ended context was sent: %s", got)
	}
}

// TestClientCallsNeverCrossUnderAbandonment: calls are reused once answered (callPool); many callers whose
// deadlines end at random points of their calls (before sending, while queued, while answered) must each get
// their own answer or an AbandonedError, never another call's answer.
func TestClientCallsNeverCrossUnderAbandonment(t *testing.T) {
	c, _ := startServeOS(t, newGate())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answered, abandoned := 0, 0
			for i := range 300 {
				body := fmt.Sprintf(`"g%d-%d"`, g, i)
				timeout := time.Duration(i%7) * 15 * time.Microsecond // 0 (never sent) to 90 µs
				if i%7 == 6 {
					timeout = time.Minute // always answered
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				out, err := c.PredictJSONContext(ctx, []byte(body))
				cancel()
				var ab *AbandonedError
				switch {
				case errors.As(err, &ab):
					abandoned++
				case err != nil:
					errs <- fmt.Errorf("call %s: %w", body, err)
					return
				case string(out) != `{"echo":`+body+`}`:
					errs <- fmt.Errorf("call %s got %s", body, out)
					return
				default:
					answered++
				}
			}
			if answered == 0 {
				errs <- fmt.Errorf("caller %d: no call answered (%d abandoned)", g, abandoned)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if out, err := c.PredictJSON([]byte(`"last"`)); err != nil || string(out) != `{"echo":"last"}` {
		t.Fatalf("after the storm: %q, %v", out, err)
	}
}

// slowThenHeld answers "slow" after 5 ms and "held" once released.
type slowThenHeld struct{ release chan struct{} }

func (h slowThenHeld) PredictJSON(body []byte) ([]byte, error) {
	switch string(body) {
	case `"slow"`:
		time.Sleep(5 * time.Millisecond)
	case `"held"`:
		<-h.release
	}
	return body, nil
}

func (slowThenHeld) PredictTensors(in []Tensor) ([]Tensor, error) { return in, nil }

// Serve may hold a quick call's answer to write it with the next one's, but a slow call's answer goes out at
// once, not after the next call (already read) ends. Here the next call ends only when the test has the first
// answer; held, the first answer would wait for the fallback release.
func TestServeDoesNotHoldASlowAnswer(t *testing.T) {
	reqR, reqW, respR, respW := osPipes(t)
	h := slowThenHeld{release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(h.release) }) }
	fallback := time.AfterFunc(20*time.Second, release)
	defer fallback.Stop()
	done := make(chan error, 1)
	go func() {
		done <- Serve(reqR, respW, testHello, h)
		respW.Close()
	}()
	defer func() {
		release()
		reqW.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	if k, _, err := ReadFrame(respR, nil); err != nil || k != KindHello {
		t.Fatalf("hello: %v %v", k, err)
	}
	var both []byte
	for _, body := range []string{`"slow"`, `"held"`} {
		b := make([]byte, headerLen+len(body))
		putHeader(b, KindPredictJSON, len(body))
		copy(b[headerLen:], body)
		both = append(both, b...)
	}
	if _, err := reqW.Write(both); err != nil { // both requests arrive together
		t.Fatal(err)
	}
	k, out, err := ReadFrame(respR, nil)
	if err != nil || k != KindResultJSON || string(out) != `"slow"` {
		t.Fatalf("first answer: %v %q %v", k, out, err)
	}
	select {
	case <-h.release:
		t.Fatal("the slow call's answer waited for the next call to end")
	default:
	}
	release()
	if k, out, err := ReadFrame(respR, nil); err != nil || string(out) != `"held"` {
		t.Fatalf("second answer: %v %q %v", k, out, err)
	}
}
