// Package e2e drives the real slipway binary: it builds it once, starts servers on temporary data folders and
// talks to them through the public client, the CLI and plain HTTP.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway/client"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

var (
	binary  string // built slipway binary
	repoDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, _ := os.Getwd()
	repoDir = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "slipway-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "slipway")
	build := exec.Command("go", "build", "-o", binary, "./cmd/slipway")
	build.Dir, build.Stdout, build.Stderr = repoDir, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build slipway:", err)
		return 1
	}
	examples := exec.Command(filepath.Join(repoDir, "examples", "build.sh"))
	examples.Stdout, examples.Stderr = os.Stderr, os.Stderr
	if err := examples.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build examples:", err)
		return 1
	}
	code := m.Run()
	if err := slipwaytest.StopKubernetes(); err != nil { // the cluster of the kubernetes tests, if they started it
		fmt.Fprintln(os.Stderr, "e2e:", err)
	}
	return code
}

// server is one running `slipway server` process.
type server struct {
	t       testing.TB
	cmd     *exec.Cmd
	dataDir string
	URL     string
	Token   string
	mu      sync.Mutex
	log     strings.Builder
	exited  chan struct{}
	caCert  string       // set by trust: an https server's certificate, for the CLI and the clients
	httpc   *http.Client // nil: http.DefaultClient
}

var listenRE = regexp.MustCompile(`addr=(https?://127\.0\.0\.1:\d+)`)

// startServer starts the binary on dataDir (a fresh temp folder when empty) and waits until it listens.
func startServer(t testing.TB, dataDir string, extraArgs ...string) *server {
	t.Helper()
	return startServerEnv(t, nil, dataDir, extraArgs...)
}

// startServerEnv is startServer with env (KEY=VALUE) added to the server's environment.
func startServerEnv(t testing.TB, env []string, dataDir string, extraArgs ...string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	s := &server{t: t, dataDir: dataDir, exited: make(chan struct{})}
	args := append([]string{"server", "--data-dir", dataDir, "--addr", "127.0.0.1:0"}, extraArgs...)
	s.cmd = exec.Command(binary, args...)
	s.cmd.Env = append(append(os.Environ(), "SLIPWAY_LOG_LEVEL=debug"), env...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() { // ends when the server closes stderr
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { s.cmd.Wait(); close(s.exited) }()
	select {
	case a := <-addr:
		s.URL = a
	case <-s.exited:
		t.Fatalf("server exited before listening:\n%s", s.Log())
	case <-time.After(60 * time.Second):
		s.Kill()
		t.Fatalf("server did not listen within 60s:\n%s", s.Log())
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.Token = strings.TrimSpace(string(tok))
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.Log())
		}
	})
	return s
}

func (s *server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *server) Client() *client.Client {
	if s.httpc != nil {
		return client.New(s.URL, s.Token, client.WithHTTPClient(s.httpc))
	}
	return client.New(s.URL, s.Token)
}

// trust makes the CLI, Client and do trust caFile (an https server's certificate).
func (s *server) trust(caFile string) {
	s.t.Helper()
	hc, err := client.HTTPClientTrusting(caFile)
	if err != nil {
		s.t.Fatal(err)
	}
	s.caCert, s.httpc = caFile, hc
}

// Stop sends SIGTERM and waits for a clean exit.
func (s *server) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// Kill ends the server with SIGKILL, as a crash would.
func (s *server) Kill() {
	s.cmd.Process.Kill()
	<-s.exited
}

// cli runs the binary as the CLI against s and returns stdout, stderr and the exit code.
func (s *server) cli(args ...string) (string, string, int) {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "SLIPWAY_URL="+s.URL, "SLIPWAY_TOKEN="+s.Token)
	if s.caCert != "" {
		cmd.Env = append(cmd.Env, "SLIPWAY_CA_CERT="+s.caCert)
	}
	cmd.Dir = repoDir
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// do sends a raw HTTP request with the given token ("" for none).
func (s *server) do(t testing.TB, method, path, token string, body io.Reader, contentType string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := http.DefaultClient
	if s.httpc != nil {
		hc = s.httpc
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func examplePath(parts ...string) string {
	return filepath.Join(append([]string{repoDir, "examples"}, parts...)...)
}
