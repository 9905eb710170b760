package app

import (
	"fmt"
	"os"

	"github.com/slipway-ml/slipway/internal/executor"
)

// jobExecutor is where job runs execute (--engine): local processes supervised by `slipway exec-supervise`, or
// Kubernetes Jobs. The kubernetes engine was checked at start (openKube), so that a wrong kubeconfig, a refused
// token, a missing namespace or image stops the server with the reason instead of failing every run later.
//
// Deployments' replicas are pods on the kubernetes engine (openKubeReplicas); registration checks and batch
// predictions stay local processes on either engine, and the server says so when it starts.
func (a *App) jobExecutor(exe string) (executor.Executor, error) {
	local := executor.NewLocal([]string{exe, "exec-limited"}).WithSupervisor([]string{exe, "exec-supervise"}).WithCPU(a.cpu)
	switch a.cfg.Engine {
	case "", "local":
		a.log.Info("engine: resources.memory_mb limits local replicas and job runs as an address-space rlimit (the kubernetes engine: the container's memory)")
		return local, nil
	case "kubernetes":
	default:
		return nil, fmt.Errorf("--engine %q: want local or kubernetes", a.cfg.Engine)
	}
	kr := a.kube.Load()
	if kr == nil {
		return nil, fmt.Errorf("--engine kubernetes: the cluster was not opened")
	}
	a.log.Info("engine: job runs are Kubernetes Jobs", "namespace", a.cfg.Namespace, "image", a.cfg.Image,
		"kubeconfig", a.cfg.Kubeconfig)
	a.log.Info("engine: registration checks and batch predictions run as local processes on this machine")
	return kr.kube, nil
}

// localCPU finds, once, how the local engine limits resources.cpu (a cgroup per process where the server's
// cgroup hierarchy is writable) and says in the log which limits apply, or why CPU is not limited.
func (a *App) localCPU() *executor.CPUCgroups {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		a.log.Info("engine: resources.cpu is not applied to local replicas and job runs: no /proc/self/cgroup", "error", err)
		return nil
	}
	c, why := executor.DetectCPUCgroups("/sys/fs/cgroup", self)
	if c == nil {
		a.log.Info("engine: resources.cpu is not applied to local replicas and job runs (the kubernetes engine applies it): " + why)
		return nil
	}
	a.cpu = c
	a.log.Info("engine: resources.cpu limits local replicas and job runs", "how", c.Describe())
	return c
}

// executable is this binary, which the local executor re-executes as its limits shim and supervisor.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("jobs: find own executable for exec-limited: %w", err)
	}
	return exe, nil
}
