package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/slipway-ml/slipway/internal/deploy"
	"github.com/slipway-ml/slipway/internal/executor"
	"github.com/slipway-ml/slipway/internal/kubereplica"
)

// kubeReplicas is the kubernetes engine's replica side, set once at start (nil with the local engine): the
// remote engine's callbacks, made before it exists, read it through this pointer.
type kubeReplicas struct {
	kube       *executor.Kube
	controller *kubereplica.Controller
	serverURL  atomic.Pointer[string] // where the pods reach the API: known once Run listens
}

// openKube connects to the cluster for --engine kubernetes and checks, before anything is restored, that it
// can run both job runs and replicas: a wrong kubeconfig, a refused token, a missing namespace or image, or
// missing permissions stop the server with the reason.
func (a *App) openKube() error {
	if a.cfg.Engine != "kubernetes" {
		return nil
	}
	k, err := executor.NewKube(executor.KubeConfig{Kubeconfig: a.cfg.Kubeconfig, Namespace: a.cfg.Namespace,
		Image: a.cfg.Image, Log: a.log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Check(ctx); err != nil {
		return err
	}
	if err := k.CheckReplicas(ctx); err != nil {
		return err
	}
	a.kube.Store(&kubeReplicas{kube: k})
	return nil
}

// openKubeReplicas makes deployments (but external ones) run as Kubernetes Deployments of worker pods: the
// remote engine connects the pools to the pods that announce themselves, the controller sizes the
// Deployments by the engine's demand and watches the pods. Call it after openRemote, before deploy.Recover.
func (a *App) openKubeReplicas() error {
	kr := a.kube.Load()
	if kr == nil {
		return nil
	}
	api, watch := kr.kube.Clients()
	remote := a.deploy.Remote()
	kr.controller = kubereplica.New(kubereplica.Config{Client: api, Watch: watch, Namespace: a.cfg.Namespace,
		Image: a.cfg.Image, HostNetwork: a.cfg.ReplicaNetwork == "host", Demand: remote.Demand,
		Template:     a.kubeTemplate,
		PodLost:      remote.DropPod,
		PodReadied:   func(string) { remote.Wake() },
		PodFailing:   remote.PodFailing,
		Applies:      a.deploy.AppliesReplicas,
		Followed:     a.deploy.FollowedVersions,
		PodOOMKilled: a.deploy.ReplicaOOMKilled,
		Log:          a.log})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kr.controller.Start(ctx); err != nil {
		return err
	}
	a.closers = append(a.closers, func() error { kr.controller.Stop(); return nil })
	a.deploy.SetKubernetes(kr.controller)
	a.log.Info("engine: deployments' replicas are Kubernetes Deployments of worker pods", "namespace", a.cfg.Namespace,
		"image", a.cfg.Image, "replica_network", a.cfg.ReplicaNetwork)
	return nil
}

// kubeTemplate is what a version's pods run: its replica spec, with the URL this server listens at (or its
// --advertise-url) and, with TLS, the certificate to trust.
func (a *App) kubeTemplate(ctx context.Context, name string, version int) (kubereplica.Template, error) {
	kr := a.kube.Load()
	url := kr.serverURL.Load()
	if url == nil {
		return kubereplica.Template{}, errors.New("the server does not listen yet")
	}
	pods, err := a.deploy.KubeTemplate(ctx, name, version, *url)
	if errors.Is(err, deploy.ErrNotServed) {
		return kubereplica.Template{}, fmt.Errorf("%w: %w", kubereplica.ErrNotServed, err)
	}
	if err != nil {
		return kubereplica.Template{}, err
	}
	if a.cfg.TLSCert != "" {
		pem, err := os.ReadFile(a.cfg.TLSCert)
		if err != nil {
			return kubereplica.Template{}, fmt.Errorf("read the TLS certificate for the replica pods: %w", err)
		}
		pods.Spec.CACert = string(pem)
		// The server speaks HTTPS: the pods serve their replicas with TLS too, with the deployment's derived key.
		pods.Spec.TLS = true
	}
	return kubereplica.Template{Spec: pods.Spec, Env: pods.Env, Resources: pods.Resources}, nil
}

// kubeListening gives the replica pods the URL they announce themselves at: --replica-announce-url (any
// server: the pods' template is the same whichever server hosts the deployment), else this server's
// --advertise-url or listen URL. It then looks for replica Deployments left by deployments deleted while no
// server ran.
func (a *App) kubeListening(ctx context.Context, listenURL string) {
	kr := a.kube.Load()
	if kr == nil || kr.controller == nil {
		return
	}
	url := listenURL
	switch {
	case a.cfg.ReplicaAnnounceURL != "":
		url = a.cfg.ReplicaAnnounceURL
	case a.cfg.AdvertiseURL != "":
		url = a.cfg.AdvertiseURL
	}
	kr.serverURL.Store(&url)
	if err := kr.controller.Sweep(ctx); err != nil {
		a.log.Warn("kubernetes engine: look for replica Deployments to clean up", "error", err)
	}
}
