package app

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/config"
	"github.com/slipway-ml/slipway/internal/httpapi"
	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
)

// grpcApp runs a real server (SQLite in a temp folder) with --grpc-addr on a free port, and returns it with
// the gRPC address it logged. Stopping it (the returned func) checks that Run ends cleanly.
func grpcApp(t *testing.T, extra ...string) (*App, string, func()) {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"--data-dir", dir, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, extra...)
	cfg, err := config.Parse(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	log := slog.New(slog.NewTextHandler(pw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	addrc := make(chan string, 1)
	go func() { // ends when the pipe is closed below
		re := regexp.MustCompile(`grpc_addr=(127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := Open(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	runc := make(chan error, 1)
	go func() { runc <- a.Run(ctx) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-runc:
		t.Fatalf("Run ended before the gRPC listener: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-runc; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		pw.Close()
	}
	t.Cleanup(stop)
	return a, addr, stop
}

// token creates a token of role with an optional rate limit and returns its secret.
func token(t *testing.T, a *App, name string, role slipway.Role, limit *slipway.TokenRateLimit) string {
	t.Helper()
	tok := &slipway.Token{ID: name, Name: name, Role: role, CreatedAt: time.Now().UTC(), Secret: httpapi.NewTokenSecret(), RateLimit: limit}
	if err := a.db.CreateToken(context.Background(), tok, httpapi.HashToken(tok.Secret)); err != nil {
		t.Fatal(err)
	}
	return tok.Secret
}

func dialGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) inferencepb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inferencepb.NewGRPCInferenceServiceClient(conn)
}

func bearer(secret string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+secret)
}

// wantCode checks err's gRPC status: its code, and a message that tells the caller what to do.
func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("%s: %v %q, want %v with %q", what, st.Code(), st.Message(), code, msg)
	}
}

func TestGRPCAuthAndErrors(t *testing.T) {
	a, addr, _ := grpcApp(t)
	c := dialGRPC(t, addr, insecure.NewCredentials())
	admin := token(t, a, "admin2", slipway.RoleAdmin, nil)
	viewer := token(t, a, "viewer", slipway.RoleViewer, nil)
	limited := token(t, a, "limited", slipway.RolePredict, &slipway.TokenRateLimit{RequestsPerSecond: 0.001, Burst: 1})

	// Health is public, as over HTTP.
	if r, err := c.ServerLive(context.Background(), &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive: %v %v", r, err)
	}
	if r, err := c.ServerReady(context.Background(), &inferencepb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady: %v %v", r, err)
	}

	infer := &inferencepb.ModelInferRequest{ModelName: "nope", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{1}, Contents: &inferencepb.InferTensorContents{Fp32Contents: []float32{1}}}}}
	_, err := c.ModelInfer(context.Background(), infer)
	wantCode(t, "no token", err, codes.Unauthenticated, `missing bearer token: send "Authorization: Bearer <token>"`)
	_, err = c.ModelInfer(bearer("not-a-token"), infer)
	wantCode(t, "bad token", err, codes.Unauthenticated, "invalid token")
	_, err = c.ModelInfer(metadata.AppendToOutgoingContext(context.Background(), "authorization", admin), infer)
	wantCode(t, "no scheme", err, codes.Unauthenticated, `use "Bearer <token>"`)
	_, err = c.ServerMetadata(bearer(viewer), &inferencepb.ServerMetadataRequest{})
	wantCode(t, "viewer", err, codes.PermissionDenied, `token "viewer" has role viewer; this needs role predict`)

	if r, err := c.ServerMetadata(bearer(admin), &inferencepb.ServerMetadataRequest{}); err != nil || r.Name != "slipway" {
		t.Fatalf("ServerMetadata: %v %v", r, err)
	}
	var header metadata.MD
	_, err = c.ModelInfer(bearer(admin), infer, grpc.Header(&header))
	wantCode(t, "unknown deployment", err, codes.NotFound, "nope")
	if len(header.Get("x-request-id")) != 1 {
		t.Fatalf("no x-request-id in the answer's header: %v", header)
	}
	_, err = c.ModelReady(bearer(admin), &inferencepb.ModelReadyRequest{Name: "nope"})
	wantCode(t, "ModelReady of an unknown deployment", err, codes.NotFound, "nope")
	_, err = c.ModelMetadata(bearer(admin), &inferencepb.ModelMetadataRequest{Name: "Bad Name!"})
	wantCode(t, "bad name", err, codes.InvalidArgument, "deployment")

	// A rate-limited token: its burst, then ResourceExhausted with the wait in a retry-after trailer.
	_, err = c.ModelInfer(bearer(limited), infer)
	wantCode(t, "within the limit", err, codes.NotFound, "nope")
	var trailer metadata.MD
	_, err = c.ModelInfer(bearer(limited), infer, grpc.Trailer(&trailer))
	wantCode(t, "over the limit", err, codes.ResourceExhausted, `token "limited" is over its rate limit`)
	if r := trailer.Get("retry-after"); len(r) != 1 || r[0] == "" {
		t.Fatalf("retry-after trailer: %v", trailer)
	}

	// The refusals are in the audit log, as HTTP's are (through its queue: wait for the writer); the rate limit
	// is load, not a refusal.
	refused := map[string]bool{}
	for deadline := time.Now().Add(30 * time.Second); len(refused) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_ = a.audit.Scan(context.Background(), slipway.AuditFilter{}, func(e *slipway.AuditEntry) error {
			if e.Method == "gRPC" {
				refused[e.Action+" "+e.Problem+" "+e.TokenName] = true
			}
			return nil
		})
	}
	for _, want := range []string{inferencepb.GRPCInferenceService_ModelInfer_FullMethodName + " unauthorized ",
		inferencepb.GRPCInferenceService_ServerMetadata_FullMethodName + " forbidden viewer"} {
		if !refused[want] {
			t.Errorf("audit log lacks the refusal %q: %v", want, refused)
		}
	}
	for r := range refused {
		if strings.Contains(r, "rate_limited") {
			t.Errorf("a rate limit is in the audit log: %s", r)
		}
	}

	// A message beyond --max-payload-bytes is refused by gRPC itself, before any decoding; compressed too (a
	// gzip bomb is cut at the limit as it inflates), while a compressed call within it is served.
	big := &inferencepb.ModelInferRequest{ModelName: "nope", RawInputContents: [][]byte{make([]byte, 11<<20)}}
	_, err = c.ModelInfer(bearer(admin), big)
	wantCode(t, "too large", err, codes.ResourceExhausted, "larger than max")
	_, err = c.ModelInfer(bearer(admin), big, grpc.UseCompressor(gzip.Name))
	wantCode(t, "too large, compressed", err, codes.ResourceExhausted, "larger than max")
	_, err = c.ModelInfer(bearer(admin), infer, grpc.UseCompressor(gzip.Name))
	wantCode(t, "compressed", err, codes.NotFound, "nope")
}

func TestGRPCStopsWithTheServer(t *testing.T) {
	_, addr, stop := grpcApp(t)
	c := dialGRPC(t, addr, insecure.NewCredentials())
	if _, err := c.ServerLive(context.Background(), &inferencepb.ServerLiveRequest{}); err != nil {
		t.Fatal(err)
	}
	stop() // Run returns nil: the listener's goroutine ended with it
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after the server stopped", addr)
	}
}

func TestGRPCSpeaksTLSWithTheServersCertificate(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	_, addr, _ := grpcApp(t, "--tls-cert", certFile, "--tls-key", keyFile)
	c := dialGRPC(t, addr, credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	if r, err := c.ServerLive(context.Background(), &inferencepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive over TLS: %v %v", r, err)
	}
	plain := dialGRPC(t, addr, insecure.NewCredentials())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := plain.ServerLive(ctx, &inferencepb.ServerLiveRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext call to the TLS listener: %v, want Unavailable", err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns them with a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slipway test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
