package workerproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// pair runs the replica's side on one end of a TCP connection and the server's on the other.
func pair(t *testing.T, replicaSecret, serverSecret []byte) (replicaErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- AcceptReplicaConn(c, replicaSecret, "churn-api", 3)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	serverErr = DialReplicaConn(c, serverSecret, "churn-api", 3)
	return <-done, serverErr
}

func TestHandshakeWithTheSameSecret(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	if rerr, serr := pair(t, secret, secret); rerr != nil || serr != nil {
		t.Fatalf("replica: %v, server: %v", rerr, serr)
	}
}

func TestHandshakeRefusesAWrongSecret(t *testing.T) {
	rerr, serr := pair(t, bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 32))
	if !errors.Is(rerr, ErrAuth) {
		t.Errorf("replica accepted a server with another secret: %v", rerr)
	}
	// The server learns why from the replica's E frame.
	if !errors.Is(serr, ErrAuth) || !strings.Contains(serr.Error(), "does not match this worker's secret") {
		t.Errorf("server error = %v, want the replica's refusal", serr)
	}
}

// TestHandshakeRefusesAReplayedProof records a genuine server's proof and sends it on a new connection: the
// replica's fresh nonce makes it worthless.
func TestHandshakeRefusesAReplayedProof(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	results := make(chan error, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				results <- err
				return
			}
			results <- AcceptReplicaConn(c, secret, "churn-api", 3)
			c.Close()
		}
	}()
	// First connection: the genuine server, with a tap on what it writes.
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var sent bytes.Buffer
	tap := struct {
		io.Reader
		io.Writer
	}{c1, io.MultiWriter(c1, &sent)}
	if err := DialReplicaConn(tap, secret, "churn-api", 3); err != nil {
		t.Fatal(err)
	}
	c1.Close()
	if err := <-results; err != nil {
		t.Fatal(err)
	}
	// Second connection: an attacker without the secret replays the recorded proof frame.
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	var ch Challenge
	if err := readHandshake(c2, KindChallenge, &ch); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Write(sent.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := <-results; !errors.Is(err, ErrAuth) {
		t.Fatalf("replayed proof: replica said %v, want an authentication failure", err)
	}
	var a Accept
	if err := readHandshake(c2, KindAccept, &a); !errors.Is(err, ErrAuth) {
		t.Errorf("the attacker got %v, want the replica's refusal", err)
	}
}

func TestHandshakeRefusesAnotherDeploymentAndJunk(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = AcceptReplicaConn(a, secret, "other-api", 3) }()
	if err := DialReplicaConn(b, secret, "churn-api", 3); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "other-api") {
		t.Errorf("a replica of another deployment: %v", err)
	}
	// A peer that sends a huge length before authenticating is refused without allocating it.
	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	go func() { _, _ = c.Write([]byte{0x0f, 0xff, 0xff, 0xff, 'C'}) }()
	var ch Challenge
	if err := readHandshake(d, KindChallenge, &ch); !errors.Is(err, ErrAuth) {
		t.Errorf("oversized handshake frame: %v", err)
	}
}

func TestReplicaTokens(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	now := time.Now()
	tok := ReplicaToken(secret, "churn.api", 4, now.Add(time.Minute))
	scope, ok := ParseReplicaToken(tok)
	if !ok || scope.Deployment != "churn.api" || scope.Version != 4 {
		t.Fatalf("parse %q: %+v %v", tok, scope, ok)
	}
	if err := scope.Verify(secret, now); err != nil {
		t.Errorf("valid token refused: %v", err)
	}
	if err := scope.Verify(bytes.Repeat([]byte{8}, 32), now); !errors.Is(err, ErrBadToken) {
		t.Errorf("token checked with another secret: %v", err)
	}
	if err := scope.Verify(secret, now.Add(2*time.Minute)); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	long, _ := ParseReplicaToken(ReplicaToken(secret, "churn.api", 4, now.Add(24*time.Hour)))
	if err := long.Verify(secret, now); !errors.Is(err, ErrBadToken) {
		t.Errorf("a token valid for a day: %v", err)
	}
	// Changing the version (or anything else) breaks the MAC.
	forged, _ := ParseReplicaToken(strings.Replace(tok, "~4~", "~5~", 1))
	if err := forged.Verify(secret, now); !errors.Is(err, ErrBadToken) {
		t.Errorf("token with another version: %v", err)
	}
	if _, ok := ParseReplicaToken("a-normal-api-token"); ok {
		t.Error("an API token parsed as a replica token")
	}
}
