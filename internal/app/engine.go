package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/slipway-ml/slipway/internal/executor"
)

// jobExecutor is where job runs execute (--engine): local processes supervised by `slipway exec-supervise`, or
// Kubernetes Jobs. The kubernetes engine is checked here, at start, so that a wrong kubeconfig, a refused token,
// a missing namespace or image stops the server with the reason instead of failing every run later.
//
// Model replicas (deployments, registration checks, batch predictions) stay local processes on either engine
// until the replica seam has a Kubernetes engine; the server says so when it starts.
func (a *App) jobExecutor(exe string) (executor.Executor, error) {
	local := executor.NewLocal([]string{exe, "exec-limited"}).WithSupervisor([]string{exe, "exec-supervise"})
	switch a.cfg.Engine {
	case "", "local":
		return local, nil
	case "kubernetes":
	default:
		return nil, fmt.Errorf("--engine %q: want local or kubernetes", a.cfg.Engine)
	}
	k, err := executor.NewKube(executor.KubeConfig{Kubeconfig: a.cfg.Kubeconfig, Namespace: a.cfg.Namespace,
		Image: a.cfg.Image, Log: a.log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Check(ctx); err != nil {
		return nil, err
	}
	a.log.Info("engine: job runs are Kubernetes Jobs", "namespace", a.cfg.Namespace, "image", a.cfg.Image,
		"kubeconfig", a.cfg.Kubeconfig)
	a.log.Warn("engine: model replicas (deployments, registration checks, batch predictions) run as local processes on this machine: the kubernetes engine runs job runs only so far")
	return k, nil
}

// executable is this binary, which the local executor re-executes as its limits shim and supervisor.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("jobs: find own executable for exec-limited: %w", err)
	}
	return exe, nil
}
