package workerproto

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
)

// A worker serving the deployment's derived certificate is accepted by a server holding the same secret,
// and refused by one holding another secret or expecting another deployment; the key is the same on every
// derivation (two servers verify the same pods), the certificate is new each time.
func TestReplicaTLSPinsTheDerivedKey(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	cert, err := ReplicaCertificate(secret, "churn-api")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := ReplicaCertificate(secret, "churn-api")
	if bytes.Equal(cert.Certificate[0], again.Certificate[0]) {
		t.Error("two derivations gave the same certificate bytes (want a fresh serial)")
	}
	if !bytes.Equal(ReplicaPublicKey(secret, "churn-api"), ReplicaPublicKey(secret, "churn-api")) ||
		bytes.Equal(ReplicaPublicKey(secret, "churn-api"), ReplicaPublicKey(secret, "other")) {
		t.Error("the derived key is not a function of (secret, deployment)")
	}
	handshake := func(clientSecret []byte, deployment string) error {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
			VerifyConnection: VerifyReplica(clientSecret, deployment, x509.NewCertPool(), "127.0.0.1")})
		if err != nil {
			return err
		}
		return c.Close()
	}
	if err := handshake(secret, "churn-api"); err != nil {
		t.Fatalf("the deployment's own worker was refused: %v", err)
	}
	if err := handshake(bytes.Repeat([]byte{8}, 32), "churn-api"); err == nil || !strings.Contains(err.Error(), "neither deployment churn-api's key nor trusted") {
		t.Errorf("another secret: %v, want a refusal", err)
	}
	if err := handshake(secret, "other"); err == nil {
		t.Error("a worker of churn-api was accepted for deployment other")
	}
}
