package app

import (
	"crypto/tls"
	"fmt"

	"github.com/slipway-ml/slipway/internal/certpool"
	"github.com/slipway-ml/slipway/internal/modelruntime"
)

// openRemote enables external deployments: replica slots connect to workers that announce themselves. Workers
// that listen with TLS are trusted when their certificate chains to the system's roots or to the server's own
// certificate (a worker given the server's key pair, or a certificate of the same private CA).
func (a *App) openRemote() error {
	cfg := modelruntime.RemoteConfig{Secret: a.db.ReplicaSecret, Log: a.log, WaitTimeout: a.cfg.ReadyTimeout,
		// Workers announce themselves to whichever server answers (--replica-announce-url): each server reads
		// the others' announcements from the database and holds its own session to every worker.
		Registry: a.db,
		// The kubernetes engine (openKubeReplicas, right after) sizes its Deployments by the demand and vouches
		// for its pods' readiness.
		PodReady: func(pod string) bool {
			if kr := a.kube.Load(); kr != nil && kr.controller != nil {
				return kr.controller.PodReady(pod)
			}
			return true
		},
		DemandChanged: func(deployment string) {
			if kr := a.kube.Load(); kr != nil && kr.controller != nil {
				kr.controller.Changed(deployment)
			}
		}}
	if a.cfg.TLSCert != "" {
		// The key pair is checked here, before anything else reads the certificate, so that a wrong path gets
		// the same message as when the listener loads it.
		if _, err := newCertReloader(a.cfg.TLSCert, a.cfg.TLSKey); err != nil {
			return err
		}
		pool, err := certpool.WithPEMFile(a.cfg.TLSCert)
		if err != nil {
			return fmt.Errorf("trust for TLS replica workers: %w", err)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	remote := modelruntime.NewRemoteEngine(cfg)
	a.closers = append(a.closers, func() error { remote.Close(); return nil })
	a.deploy.SetRemote(remote, a.db)
	return nil
}
