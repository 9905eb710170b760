package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/slipwaytest"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// TestKubernetesReplicasTLS: a server with TLS gives its replica pods a spec that trusts its certificate and
// makes them serve TLS with the deployment's key derived from its replica secret; the router dials them over
// TLS, pinning that key, and predictions answer. The worker's certificate, read here by a TLS client of the
// test's own, carries exactly the derived key.
func TestKubernetesReplicasTLS(t *testing.T) {
	k := slipwaytest.StartKubernetes(t, binary)
	cs := kubeClient(t, k)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, 1)
	s := startKubeServer(t, k, "", "--replica-network", "host", "--tls-cert", certFile, "--tls-key", keyFile)
	s.trust(certFile)
	pushExamples(t, s)
	name := "ktls"
	deploy(t, s, name, "--model", "churn-onnx:1", "--replicas", "1")
	t.Cleanup(func() { s.cli("deployments", "delete", name) })
	waitFor(t, "the pod's worker connected", 3*time.Minute, func() bool { return connected(s, name, 1) })
	d, err := s.Client().GetDeployment(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	w := d.RemoteReplicas[0]
	if !w.TLS {
		t.Fatalf("the pod's worker does not serve TLS: %+v", w)
	}
	body := onnxBody(t)
	for range 5 {
		if resp, b := s.do(t, "POST", "/deployments/"+name+"/invocations", s.Token, bytes.NewReader(body), "application/json"); resp.StatusCode != 200 {
			t.Fatalf("predict over TLS to the pod: %d %s", resp.StatusCode, b)
		}
	}

	// The spec in the version's Secret asks for TLS and trusts the server's certificate; the worker's
	// certificate carries the key derived from the spec's secret.
	sec, err := cs.CoreV1().Secrets("default").Get(ctxFor(t, time.Minute), "slipway-"+name+"-v1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := slipway.DecodeReplicaSpec(string(sec.Data["spec"]))
	if err != nil || !spec.TLS || spec.CACert == "" {
		t.Fatalf("replica spec in the Secret: tls %v, ca cert %d bytes, %v", spec.TLS, len(spec.CACert), err)
	}
	conn, err := tls.Dial("tcp", w.Address, &tls.Config{InsecureSkipVerify: true}) // only to read the certificate
	if err != nil {
		t.Fatalf("TLS to the worker at %s: %v", w.Address, err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok || !bytes.Equal(pub, workerproto.ReplicaPublicKey(spec.Secret, name)) {
		t.Fatalf("the worker's certificate (%s) does not carry deployment %s's derived key", leaf.Subject, name)
	}
	// A TLS client that pins another deployment's key is refused by the router's own check.
	conn, err = tls.Dial("tcp", w.Address, &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
		VerifyConnection: workerproto.VerifyReplica(spec.Secret, "another", nil, "127.0.0.1")})
	if err == nil {
		conn.Close()
		t.Fatal("the router's check accepted the worker for another deployment")
	}
	if resp, b := s.do(t, "POST", "/deployments/"+name+"/invocations", s.Token, bytes.NewReader(body), "application/json"); resp.StatusCode != 200 {
		t.Fatalf("predict after the test's own connections: %d %s", resp.StatusCode, b)
	}
}
