package app

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// certReloader serves the certificate in certFile/keyFile and loads it again on Reload (SIGHUP), so that a
// renewed certificate (Let's Encrypt, an internal CA) is served without a restart. A reload that fails keeps
// the certificate in use.
type certReloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	return r, r.Reload()
}

// Reload reads the key pair again.
func (r *certReloader) Reload() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cur.Store(&c)
	return nil
}

func (r *certReloader) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// tlsConfig is the listener's: TLS 1.2 at least, the certificate chosen per handshake.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.certificate, NextProtos: []string{"http/1.1"}}
}
