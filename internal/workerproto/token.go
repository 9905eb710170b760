package workerproto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Replica tokens are what a network replica shows the server's API (downloading its version's files,
// announcing itself): "swr1~DEPLOYMENT~VERSION~EXPIRY~MAC" ('~' is in neither names nor base64url), the MAC being HMAC-SHA256 of the rest under the
// deployment's replica secret. They are scoped to one deployment and version, read-only, and short-lived;
// the worker mints a fresh one per call from the secret, so the secret itself never travels.

const tokenPrefix = "swr1"

// MaxTokenLife bounds how far in the future a replica token's expiry may be: the server refuses longer ones.
const MaxTokenLife = 15 * time.Minute

// ErrBadToken is wrapped by every replica token that does not verify.
var ErrBadToken = errors.New("invalid replica token")

// ReplicaToken returns a token for deployment's version that expires at exp.
func ReplicaToken(secret []byte, deployment string, version int, exp time.Time) string {
	body := fmt.Sprintf("%s~%s~%d~%d", tokenPrefix, deployment, version, exp.Unix())
	return body + "~" + base64.RawURLEncoding.EncodeToString(tokenMAC(secret, body))
}

func tokenMAC(secret []byte, body string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("replica-token\x00" + body))
	return m.Sum(nil)
}

// TokenScope is what a replica token claims, read before it is verified (to find the deployment's secret).
type TokenScope struct {
	Deployment string
	Version    int
	Expires    time.Time
	body, mac  string
}

// ParseReplicaToken splits a token without verifying it; ok is false when it is not a replica token at all.
func ParseReplicaToken(tok string) (TokenScope, bool) {
	parts := strings.Split(tok, "~")
	if len(parts) != 5 || parts[0] != tokenPrefix {
		return TokenScope{}, false
	}
	v, err1 := strconv.Atoi(parts[2])
	exp, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || parts[1] == "" {
		return TokenScope{}, false
	}
	return TokenScope{Deployment: parts[1], Version: v, Expires: time.Unix(exp, 0),
		body: strings.Join(parts[:4], "~"), mac: parts[4]}, true
}

// Verify checks the token's MAC under secret (constant time) and its expiry against now.
func (s TokenScope) Verify(secret []byte, now time.Time) error {
	mac, err := base64.RawURLEncoding.DecodeString(s.mac)
	if err != nil || !hmac.Equal(mac, tokenMAC(secret, s.body)) {
		return fmt.Errorf("%w: it was not made with deployment %s's replica secret (a replica spec from before the deployment was recreated?)", ErrBadToken, s.Deployment)
	}
	switch {
	case !now.Before(s.Expires):
		return fmt.Errorf("%w: it expired at %s (is the worker's clock right?)", ErrBadToken, s.Expires.UTC().Format(time.RFC3339))
	case s.Expires.Sub(now) > MaxTokenLife+time.Minute:
		return fmt.Errorf("%w: it expires at %s, more than %s from now (is the worker's clock right?)", ErrBadToken, s.Expires.UTC().Format(time.RFC3339), MaxTokenLife)
	}
	return nil
}
