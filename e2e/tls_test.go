package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 with the given serial to certFile and keyFile,
// each replaced atomically (as a certificate renewal does).
func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "slipway-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for path, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
}

// The server speaks HTTPS with --tls-cert/--tls-key: the CLI, a deployment's predictions and a job run reach it
// when they trust its certificate, are told how when they do not, and SIGHUP serves a renewed certificate.
func TestHTTPS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", certFile}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", keyFile}, "load TLS certificate"},
	} {
		if out, err := startFailing(t, append([]string{"--data-dir", t.TempDir()}, tc.args...)...); err == nil || !strings.Contains(out, tc.want) {
			t.Fatalf("server %v: %v\n%s", tc.args, err, out)
		}
	}

	s := startServer(t, "", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("server URL %s", s.URL)
	}
	if _, errOut, code := s.cli("whoami"); code == 0 || !strings.Contains(errOut, "is not trusted") || !strings.Contains(errOut, "--ca-cert") {
		t.Fatalf("whoami without trusting the certificate: exit %d %s", code, errOut)
	}
	if resp, err := http.Get(s.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a client that does not trust the certificate got an answer")
	}

	s.trust(certFile)
	if out, errOut, code := s.cli("whoami"); code != 0 || !strings.Contains(out, "admin") {
		t.Fatalf("whoami over HTTPS: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := s.cli("models", "push", examplePath("sklearn-churn"), "--model", "churn",
		"--metadata", examplePath("sklearn-churn", "metadata.json")); code != 0 {
		t.Fatalf("push over HTTPS: %s %s", out, errOut)
	}
	deploy(t, s, "churn", "--model", "churn:1")
	resp, body := invokeChurn(t, s, "churn", 2)
	if resp.StatusCode != 200 {
		t.Fatalf("predict over HTTPS: %d %s", resp.StatusCode, body)
	}

	// The Python SDK trusts SLIPWAY_CA_CERT as the CLI does.
	py := exec.Command("/usr/bin/python3", "-c", "import slipway; print(slipway.Client().whoami()['role'])")
	py.Dir = filepath.Join(repoDir, "sdk", "python")
	py.Env = append(os.Environ(), "SLIPWAY_URL="+s.URL, "SLIPWAY_TOKEN="+s.Token)
	if out, err := py.CombinedOutput(); err == nil {
		t.Fatalf("the SDK without the certificate: %s", out)
	}
	py = exec.Command(py.Path, py.Args[1:]...)
	py.Dir = filepath.Join(repoDir, "sdk", "python")
	py.Env = append(os.Environ(), "SLIPWAY_URL="+s.URL, "SLIPWAY_TOKEN="+s.Token, "SLIPWAY_CA_CERT="+certFile)
	if out, err := py.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "admin" {
		t.Fatalf("the SDK over HTTPS: %v %s", err, out)
	}

	// A job run gets an https SLIPWAY_URL and the certificate to trust (SLIPWAY_CA_CERT).
	c := s.Client()
	createShellJob(t, c, "caller", `"$CLI_BINARY" whoami && echo '{"reached_server": true}' > "$SLIPWAY_OUTPUT_DIR/outputs.json"`, slipway.JobSpec{})
	run, err := c.RunJob(ctxFor(t, time.Minute), "caller", client.RunInput{Env: map[string]string{"CLI_BINARY": binary}})
	if err != nil {
		t.Fatal(err)
	}
	if r := waitJobRun(t, c, run.ID); r.State != slipway.RunSucceeded || r.Outputs["reached_server"] != true {
		t.Fatalf("a job run calling the API over HTTPS: %s %q %v\n%s", r.State, r.Reason, r.Outputs, runLog(t, c, run.ID))
	}

	// A renewed certificate is served after SIGHUP, without a restart.
	writeSelfSigned(t, certFile, keyFile, 2)
	pool := x509.NewCertPool()
	renewed, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(renewed)
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed certificate", time.Minute, func() bool {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.URL, "https://"), &tls.Config{RootCAs: pool})
		if err != nil {
			return false
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64() == 2
	})
	waitFor(t, "the reload in the server log", time.Minute, func() bool { return strings.Contains(s.Log(), "reloaded the TLS certificate") })
}
