package slipwaytest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Kubernetes is the single-node cluster scripts/k8s-dev.sh starts (real pods), shared by a test binary.
type Kubernetes struct {
	Dir        string // the cluster's folder: logs/, the kubeconfig, containerd's socket
	Kubeconfig string
	Image      string        // Slipway's runtime image, imported on the node
	UpTime     time.Duration // how long `k8s-dev.sh up` took (images and node ready included)
}

var kube struct {
	mu      sync.Mutex
	cluster *Kubernetes
	err     error
}

// StartKubernetes starts the cluster once per test binary (later calls return the same one) with slipwayBin in
// Slipway's image, and returns it; StopKubernetes (from TestMain) stops it. It needs the kubernetes and rootfs
// engines (scripts/engines.sh) and root; without them the test fails with what to do.
func StartKubernetes(tb testing.TB, slipwayBin string) *Kubernetes {
	tb.Helper()
	Engine(tb, "kubernetes")
	if os.Geteuid() != 0 {
		tb.Fatal("the Kubernetes test cluster needs root (containerd and the kubelet): run the tests as root")
	}
	kube.mu.Lock()
	defer kube.mu.Unlock()
	if kube.cluster == nil && kube.err == nil {
		kube.cluster, kube.err = startKubernetes(slipwayBin)
	}
	if kube.err != nil {
		tb.Fatal(kube.err)
	}
	return kube.cluster
}

func startKubernetes(slipwayBin string) (*Kubernetes, error) {
	dir, err := os.MkdirTemp("", "slipway-k8s-")
	if err != nil {
		return nil, err
	}
	k := &Kubernetes{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), Image: "localhost/slipway:dev"}
	cmd := exec.Command(k8sDev(), "up", dir)
	// The image tar and containerd's images are kept between test binaries: the 1 GB image is built and
	// imported again only when the binary (or the rootfs) changed.
	cmd.Env = append(os.Environ(), "SLIPWAY_BIN="+slipwayBin,
		"SLIPWAY_K8S_IMAGE_CACHE="+filepath.Join(EnginesDir(), ".images"),
		"SLIPWAY_K8S_CONTAINERD_ROOT="+filepath.Join(EnginesDir(), ".containerd"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		down := stopCluster(dir)
		return nil, fmt.Errorf("scripts/k8s-dev.sh up: %v\n%s%v", err, out.String(), down)
	}
	k.UpTime = time.Since(start)
	return k, nil
}

// StopKubernetes stops the test binary's cluster, if one was started, and removes its folder.
func StopKubernetes() error {
	kube.mu.Lock()
	defer kube.mu.Unlock()
	if kube.cluster == nil {
		return nil
	}
	err := stopCluster(kube.cluster.Dir)
	kube.cluster = nil
	return err
}

func stopCluster(dir string) error {
	out, err := exec.Command(k8sDev(), "down", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("scripts/k8s-dev.sh down %s: %v\n%s", dir, err, out)
	}
	return os.RemoveAll(dir)
}

// k8sDev is scripts/k8s-dev.sh of this checkout.
func k8sDev() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "k8s-dev.sh")
}
