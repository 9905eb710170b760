package modelruntime

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// echoModel answers predict JSON with its input.
type echoModel struct{}

func (echoModel) PredictTensors(in []workerproto.Tensor) ([]workerproto.Tensor, error) {
	return in, nil
}
func (echoModel) PredictJSON(b []byte) ([]byte, error) { return b, nil }

// fakeWorker is the replica side of `slipway worker serve`, in process: handshake, then the protocol.
func fakeWorker(t *testing.T, secret []byte, cfg *tls.Config) (addr string, conns chan net.Conn) {
	t.Helper()
	var ln net.Listener
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	t.Cleanup(func() { ln.Close() })
	conns = make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				defer c.Close()
				if err := workerproto.AcceptReplicaConn(c, secret, "churn-api", 2); err != nil {
					return
				}
				_ = workerproto.Serve(c, c, workerproto.Hello{OK: true, Runtime: "python"}, echoModel{})
			}()
		}
	}()
	return ln.Addr().String(), conns
}

func newTestEngine(t *testing.T, secret []byte, tlsCfg *tls.Config) *RemoteEngine {
	e := NewRemoteEngine(RemoteConfig{
		Secret:      func(context.Context, string) ([]byte, error) { return secret, nil },
		TLS:         tlsCfg,
		WaitTimeout: 2 * time.Second, HeartbeatInterval: time.Hour,
	})
	t.Cleanup(e.Close)
	return e
}

var remoteSpec = ProcessSpec{Runtime: slipway.RuntimePython, Deployment: "churn-api", Version: 2}

func TestRemoteEngineServesAnAnnouncedWorker(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	addr, conns := fakeWorker(t, secret, nil)
	e := newTestEngine(t, secret, nil)
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w1", Address: addr, Version: 2})
	rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := rep.PredictJSON(context.Background(), []byte(`{"x": 1}`))
	if err != nil || string(out) != `{"x": 1}` {
		t.Fatalf("predict = %s, %v", out, err)
	}
	if ws := e.Workers("churn-api"); len(ws) != 1 || ws[0].State != "CONNECTED" {
		t.Errorf("workers = %+v, want w1 CONNECTED", ws)
	}
	// The connection drops (the worker was killed): the replica has died, the call says so (the pool retries
	// such calls elsewhere), and the worker is forgotten until it announces itself again.
	(<-conns).Close()
	_, err = rep.PredictJSON(context.Background(), []byte(`{}`))
	if !errors.Is(err, ErrReplicaDied) {
		t.Fatalf("call on a dropped connection: %v, want ErrReplicaDied", err)
	}
	select {
	case <-rep.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the connection dropped")
	}
	if ws := e.Workers("churn-api"); len(ws) != 0 {
		t.Errorf("workers after the drop = %+v, want none", ws)
	}
	// No worker left: Start waits, then says what to do.
	_, err = startReplica(context.Background(), e, remoteSpec, time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "slipway worker serve") {
		t.Errorf("start without workers: %v", err)
	}
}

func TestRemoteEngineSkipsAWorkerWithAnotherSecret(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	bad, _ := fakeWorker(t, bytes.Repeat([]byte{2}, 32), nil)
	good, _ := fakeWorker(t, secret, nil)
	e := newTestEngine(t, secret, nil)
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "bad", Address: bad, Version: 2})
	var lines []string
	rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, func(l string) { lines = append(lines, l) })
	if err == nil {
		rep.Kill()
		t.Fatal("a worker with another secret was connected")
	}
	if !strings.Contains(strings.Join(lines, "\n"), "authentication failed") {
		t.Errorf("log lines %q do not name the refusal", lines)
	}
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "good", Address: good, Version: 2})
	rep, err = startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Kill()
	if err := rep.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRemoteEngineOverTLS(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	cert, pool := selfSigned(t)
	addr, _ := fakeWorker(t, secret, &tls.Config{Certificates: []tls.Certificate{cert}})
	// Not trusted: the dial fails on the certificate.
	untrusting := newTestEngine(t, secret, &tls.Config{RootCAs: x509.NewCertPool()})
	untrusting.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w", Address: addr, Version: 2, TLS: true})
	var lines []string
	if _, err := startReplica(context.Background(), untrusting, remoteSpec, time.Second, func(l string) { lines = append(lines, l) }); err == nil {
		t.Fatal("connected to a worker whose certificate is not trusted")
	}
	if !strings.Contains(strings.Join(lines, "\n"), "certificate") {
		t.Errorf("log lines %q do not name the certificate", lines)
	}
	e := newTestEngine(t, secret, &tls.Config{RootCAs: pool})
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w", Address: addr, Version: 2, TLS: true})
	rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rep.Kill()
	if out, err := rep.PredictJSON(context.Background(), []byte(`[1]`)); err != nil || string(out) != `[1]` {
		t.Fatalf("predict over TLS = %s, %v", out, err)
	}
}

func TestRemoteEngineForgetsSilentWorkers(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	addr, _ := fakeWorker(t, secret, nil)
	e := NewRemoteEngine(RemoteConfig{Secret: func(context.Context, string) ([]byte, error) { return secret, nil },
		HeartbeatInterval: 50 * time.Millisecond})
	defer e.Close()
	e.Announce("churn-api", slipway.ReplicaAnnouncement{ID: "w", Address: addr, Version: 2})
	rep, err := startReplica(context.Background(), e, remoteSpec, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	// No heartbeat follows: the worker is forgotten and its session ended.
	select {
	case <-rep.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session of a worker without heartbeats was not ended")
	}
	if ws := e.Workers("churn-api"); len(ws) != 0 {
		t.Errorf("workers = %+v", ws)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "worker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
