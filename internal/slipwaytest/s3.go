package slipwaytest

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a real S3 server on 127.0.0.1: versitygw (Apache-2.0) with its posix backend in a temporary folder,
// built once by `scripts/engines.sh versitygw`. It checks every request's SigV4 signature against its root
// account (S3AccessKey, S3SecretKey), as AWS does. No real S3 service is reachable from this machine, and
// MinIO's server is AGPL.
//
// The clients under test reach it through URL, a pass-through reverse proxy in this process that forwards
// each request unchanged (the Host header the client signed included) and only counts what the tests ask
// about: refused requests and multipart parts. With StartS3TLS the proxy also terminates HTTPS, as a load
// balancer in front of a store does.
type S3 struct {
	URL    string       // http://127.0.0.1:PORT (https:// with StartS3TLS): what clients under test use
	Dir    string       // versitygw's root: the object BUCKET/KEY is the file Dir/BUCKET/KEY
	Denied atomic.Int64 // requests the server refused with 403 (a wrong key or a bad signature)
	Parts  atomic.Int64 // parts received by multipart uploads
	CAFile string       // with StartS3TLS: the proxy's certificate, PEM

	direct string // versitygw's own http:// URL
	proxy  *httptest.Server
}

// S3AccessKey and S3SecretKey are the credentials of the server's root account: a request signed with any other
// key or secret is refused.
const (
	S3AccessKey = "slipway-test"
	S3SecretKey = "slipway-test-secret"
)

// UseS3Credentials puts the test server's key where every AWS client looks first (the environment), for the
// test's duration; the test must not be parallel.
func UseS3Credentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", S3AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", S3SecretKey)
}

// StartS3 starts the server (plain HTTP) with the given buckets; it stops when the test ends.
func StartS3(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	return startS3(t, false, buckets)
}

// StartS3TLS starts the server on HTTPS, as AWS S3 is served: URL is https://, and CAFile holds the PEM of the
// certificate a client must trust.
func StartS3TLS(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	return startS3(t, true, buckets)
}

func startS3(t testing.TB, useTLS bool, buckets []string) *S3 {
	t.Helper()
	bin := filepath.Join(Engine(t, "versitygw"), "versitygw")
	s := &S3{Dir: t.TempDir()}
	s.startVersity(t, bin)
	target, err := url.Parse(s.direct)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target) // keeps the request's Host: the signature covers it
	rp.ErrorLog = log.New(io.Discard, "", 0)         // a client that hangs up mid-body is what some tests do
	rp.ModifyResponse = func(r *http.Response) error {
		if r.StatusCode == http.StatusForbidden {
			s.Denied.Add(1)
		}
		return nil
	}
	s.proxy = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			s.Parts.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	s.proxy.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests are about
	if useTLS {
		s.proxy.StartTLS()
		s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
		cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.proxy.Certificate().Raw})
		if err := os.WriteFile(s.CAFile, cert, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		s.proxy.Start()
	}
	s.URL = s.proxy.URL
	t.Cleanup(s.proxy.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range buckets {
		if err := s.client(t).MakeBucket(ctx, b, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
			t.Fatalf("versitygw: create bucket %s: %v", b, err)
		}
	}
	return s
}

// startVersity runs versitygw on a free port, waits until it answers and stops it (by its pid) at cleanup.
func (s *S3) startVersity(t testing.TB, bin string) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(t.TempDir(), "versitygw.log") // outside Dir, which holds only buckets
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logFile.Close() }() // the child has its own descriptor: this one only writes nothing
	output := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	cmd := exec.Command(bin, "--port", addr, "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+S3AccessKey, "ROOT_SECRET_ACCESS_KEY="+S3SecretKey)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	var waitErr error // set before exited closes
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// It may have exited already; how it exits at cleanup changes no test's verdict.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	s.direct = "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		// An anonymous GET / is refused (403) once the server is up: the answer is the readiness signal.
		resp, err := http.Get(s.direct + "/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusForbidden {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("versitygw exited before it served (%v):\n%s", waitErr, output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not answer on %s within 30 s:\n%s", addr, output())
		}
	}
}

// client is an S3 client of the server itself (not through the proxy, so that the tests' own requests are not
// counted), signed with the root account.
func (s *S3) client(t testing.TB) *minio.Client {
	t.Helper()
	u, _ := url.Parse(s.direct)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(S3AccessKey, S3SecretKey, ""),
		Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Keys lists the keys under prefix in bucket.
func (s *S3) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	for o := range s.client(t).ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list s3://%s/%s: %v", bucket, prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// PutObject writes an object as another client of the bucket would (tests that damage or replace objects).
func (s *S3) PutObject(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client(t).PutObject(ctx, bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
