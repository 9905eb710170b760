// Package certpool builds the certificate pools of Slipway's TLS clients: the system's roots plus those of a
// PEM file (a private CA, or a self-signed server certificate).
package certpool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// WithPEMFile returns the system roots plus the certificates in path; a file without any is an error.
func WithPEMFile(path string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}
