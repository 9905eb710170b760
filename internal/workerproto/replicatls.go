package workerproto

// TLS for replica workers that the server starts itself (the kubernetes engine's pods) when the server serves
// HTTPS: each deployment has a key pair derived from its replica secret, which the worker and every server
// of the deployment hold already. The worker serves TLS with a certificate of that key; the server pins the
// key. No certificate travels, none is stored, and two servers on one database derive the same key, so
// either verifies the other's pods. Rotating the secret (a new deployment) rotates the key.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// replicaKey is the deployment's derived ed25519 key: its seed is an HMAC of the deployment's name under the
// replica secret, in a domain of its own (the handshake's MACs use other inputs).
func replicaKey(secret []byte, deployment string) ed25519.PrivateKey {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("slipway replica tls key v1\x00" + deployment))
	return ed25519.NewKeyFromSeed(m.Sum(nil))
}

// ReplicaPublicKey is the public key a deployment's self-started workers serve TLS with.
func ReplicaPublicKey(secret []byte, deployment string) ed25519.PublicKey {
	return replicaKey(secret, deployment).Public().(ed25519.PublicKey)
}

// ReplicaCertificate is a self-signed certificate of the deployment's derived key, for the worker's
// listener. Its validity is wide (the key, which the server pins, is what is checked, not a chain or dates);
// the names say what it is for a person reading it.
func ReplicaCertificate(secret []byte, deployment string) (tls.Certificate, error) {
	key := replicaKey(secret, deployment)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("replica certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "slipway replica of " + deployment},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("replica certificate of %s: %w", deployment, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// VerifyReplica returns a tls.Config check (for VerifyConnection, with InsecureSkipVerify set so that the
// default chain check does not run first) that accepts a worker whose certificate carries the deployment's
// derived key, or else one whose chain verifies against roots (nil: the system's) for serverName: a worker
// started by hand with a certificate of a CA keeps working.
func VerifyReplica(secret []byte, deployment string, roots *x509.CertPool, serverName string) func(tls.ConnectionState) error {
	want := ReplicaPublicKey(secret, deployment)
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the worker presented no TLS certificate")
		}
		leaf := cs.PeerCertificates[0]
		if pub, ok := leaf.PublicKey.(ed25519.PublicKey); ok && bytes.Equal(pub, want) {
			return nil
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: serverName}); err != nil {
			return fmt.Errorf("the worker's TLS certificate is neither deployment %s's key nor trusted: %w", deployment, err)
		}
		return nil
	}
}
