package workerproto

// The TCP transport (docs/worker-protocol.md, "Over the network"): a replica served by `slipway worker serve`
// speaks the same frames over a TCP (or TLS) connection, after a mutual HMAC challenge/response that proves
// both ends hold the deployment's replica secret without sending it.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Handshake frame kinds: they come before the hello, on network connections only.
const (
	KindChallenge Kind = 'C' // replica → server: who it serves and a fresh nonce
	KindProof     Kind = 'P' // server → replica: its own nonce and its proof over both nonces
	KindAccept    Kind = 'A' // replica → server: its proof; the hello follows
)

// Protocol names the network transport's version in the challenge.
const Protocol = "slipway-worker/1"

// maxHandshakeFrame bounds the handshake frames: they are read before the peer is authenticated.
const maxHandshakeFrame = 4 << 10

// HandshakeTimeout bounds the whole handshake: a peer that connects and says nothing is dropped.
const HandshakeTimeout = 10 * time.Second

// ErrAuth is wrapped by every authentication failure of the handshake.
var ErrAuth = errors.New("replica authentication failed")

// Challenge is the replica's first frame: what it serves and its nonce.
type Challenge struct {
	Protocol   string `json:"protocol"`
	Deployment string `json:"deployment"`
	Version    int    `json:"version"`
	Nonce      []byte `json:"nonce"`
}

// Proof is the server's answer to a challenge.
type Proof struct {
	Deployment string `json:"deployment"`
	Nonce      []byte `json:"nonce"`
	MAC        []byte `json:"mac"`
}

// Accept is the replica's proof, after which the ordinary protocol (hello first) runs.
type Accept struct {
	MAC []byte `json:"mac"`
}

// deadliner is what a net.Conn offers to bound the handshake.
type deadliner interface {
	SetDeadline(t time.Time) error
}

func newNonce() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux (it panics instead)
	return b
}

// handshakeMAC is HMAC-SHA256(secret, role | deployment | version | first nonce | second nonce); the role makes
// the server's proof useless as the replica's, and the other way round.
func handshakeMAC(secret []byte, role, deployment string, version int, first, second []byte) []byte {
	m := hmac.New(sha256.New, secret)
	_, _ = fmt.Fprintf(m, "%s\x00%s\x00%d\x00", role, deployment, version) // a hash never fails to write
	m.Write(first)
	m.Write(second)
	return m.Sum(nil)
}

func writeJSONFrame(w io.Writer, kind Kind, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("workerproto: encode %s: %w", kind, err)
	}
	return WriteFrame(w, kind, b)
}

// readHandshake reads one frame of the expected kind (an E frame is the peer's refusal) into v.
func readHandshake(r io.Reader, want Kind, v any) error {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("workerproto: handshake: read %s: %w", want, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxHandshakeFrame {
		return fmt.Errorf("%w: handshake frame of %d bytes (is this a slipway worker serve port?)", ErrAuth, n)
	}
	kind, payload := Kind(hdr[4]), make([]byte, n-1)
	if _, err := io.ReadFull(r, payload); err != nil {
		return fmt.Errorf("workerproto: handshake: read %s: %w", want, err)
	}
	if kind == KindError {
		var me ModelError
		_ = json.Unmarshal(payload, &me)
		return fmt.Errorf("%w: the replica refused the connection: %s", ErrAuth, me.Message)
	}
	if kind != want {
		return fmt.Errorf("%w: expected frame %s, got %s (is this a slipway worker serve port?)", ErrAuth, want, kind)
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("workerproto: handshake: decode %s: %w", want, err)
	}
	return nil
}

// AcceptReplicaConn runs the replica's side of the handshake on a new connection: it challenges the peer, checks
// its proof (constant time) and proves itself. On a failed proof it tells the peer why (an E frame) and returns
// an error wrapping ErrAuth; the caller closes the connection.
func AcceptReplicaConn(conn io.ReadWriter, secret []byte, deployment string, version int) error {
	if d, ok := conn.(deadliner); ok {
		_ = d.SetDeadline(time.Now().Add(HandshakeTimeout))
		defer func() { _ = d.SetDeadline(time.Time{}) }()
	}
	ch := Challenge{Protocol: Protocol, Deployment: deployment, Version: version, Nonce: newNonce()}
	if err := writeJSONFrame(conn, KindChallenge, ch); err != nil {
		return err
	}
	var p Proof
	if err := readHandshake(conn, KindProof, &p); err != nil {
		return err
	}
	want := handshakeMAC(secret, "server", deployment, version, ch.Nonce, p.Nonce)
	if p.Deployment != deployment || len(p.Nonce) != 32 || !hmac.Equal(p.MAC, want) {
		err := fmt.Errorf("%w: the server's proof does not match this worker's secret for deployment %s (a stale replica spec, or not the deployment's server)", ErrAuth, deployment)
		_ = WriteFrame(conn, KindError, errorPayload(&ModelError{Message: err.Error(), Type: "AuthError"}))
		return err
	}
	return writeJSONFrame(conn, KindAccept, Accept{MAC: handshakeMAC(secret, "replica", deployment, version, p.Nonce, ch.Nonce)})
}

// DialReplicaConn runs the server's side of the handshake on a connection to a replica: it answers the
// replica's challenge and checks the replica's proof, and that it serves the deployment and version expected.
func DialReplicaConn(conn io.ReadWriter, secret []byte, deployment string, version int) error {
	if d, ok := conn.(deadliner); ok {
		_ = d.SetDeadline(time.Now().Add(HandshakeTimeout))
		defer func() { _ = d.SetDeadline(time.Time{}) }()
	}
	var ch Challenge
	if err := readHandshake(conn, KindChallenge, &ch); err != nil {
		return err
	}
	switch {
	case ch.Protocol != Protocol:
		return fmt.Errorf("%w: the replica speaks %q, this server %q", ErrAuth, ch.Protocol, Protocol)
	case ch.Deployment != deployment || ch.Version != version:
		return fmt.Errorf("%w: the replica serves %s version %d, not %s version %d", ErrAuth, ch.Deployment, ch.Version, deployment, version)
	case len(ch.Nonce) != 32:
		return fmt.Errorf("%w: the replica's nonce has %d bytes, not 32", ErrAuth, len(ch.Nonce))
	}
	p := Proof{Deployment: deployment, Nonce: newNonce()}
	p.MAC = handshakeMAC(secret, "server", deployment, version, ch.Nonce, p.Nonce)
	if err := writeJSONFrame(conn, KindProof, p); err != nil {
		return err
	}
	var a Accept
	if err := readHandshake(conn, KindAccept, &a); err != nil {
		return err
	}
	if !hmac.Equal(a.MAC, handshakeMAC(secret, "replica", deployment, version, p.Nonce, ch.Nonce)) {
		return fmt.Errorf("%w: the replica's proof does not match deployment %s's secret", ErrAuth, deployment)
	}
	return nil
}
