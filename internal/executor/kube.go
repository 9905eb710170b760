package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeConfig says which cluster, namespace and image the kubernetes executor uses.
type KubeConfig struct {
	Kubeconfig string // a kubeconfig file; "" uses the pod's in-cluster configuration
	Namespace  string
	Image      string // the image job runs use (scripts/image.sh builds Slipway's)
	Log        *slog.Logger
}

// Kube runs each job run as a Kubernetes Job of one pod (client-go; every write a server-side apply by the
// field manager "slipway"). The run's files travel in a ConfigMap the Job owns, its output is the pod's log, its
// outputs.json comes back as the container's termination message. The Job outlives the server: a later server
// re-attaches to it by its label (Recover), and reads the log on from where the last one stopped.
type Kube struct {
	client    kubernetes.Interface
	logs      kubernetes.Interface // without a request timeout: log streams last as long as their run
	namespace string
	image     string
	host      string // the API server, for messages
	log       *slog.Logger

	mu   sync.Mutex
	runs map[string]*kubeRun
}

var _ Executor = (*Kube)(nil)

// NewKube connects to the cluster. Check says whether the cluster can run jobs.
func NewKube(cfg KubeConfig) (*Kube, error) {
	if cfg.Image == "" {
		return nil, errors.New("kubernetes engine: --image is required (the image job runs use; scripts/image.sh builds one)")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubernetes engine: kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes engine: no --kubeconfig and not running in a pod (%v): give --kubeconfig or SLIPWAY_KUBECONFIG", err)
		}
	}
	rc.UserAgent = "slipway"
	logs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes engine: client: %w", err)
	}
	rc.Timeout = 30 * time.Second // every call but the log streams and watches (which time out by themselves)
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes engine: client: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Kube{client: client, logs: logs, namespace: cfg.Namespace, image: cfg.Image, host: rc.Host, log: log, runs: map[string]*kubeRun{}}, nil
}

// Check is the start-up check of the configuration: the API server answers, accepts the credentials, has the
// namespace, lets Slipway manage Jobs, ConfigMaps and read pod logs there, and (for a locally built image,
// which no node can pull) some node has the image.
func (k *Kube) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := k.client.Discovery().ServerVersion(); err != nil {
		return k.apiError("reach the API server", err)
	}
	if _, err := k.client.CoreV1().Namespaces().Get(ctx, k.namespace, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("kubernetes engine: namespace %q does not exist on %s: create it, or give --namespace", k.namespace, k.host)
		}
		if !apierrors.IsForbidden(err) { // a Role limited to its namespace may not read Namespace objects
			return k.apiError("read namespace "+k.namespace, err)
		}
	}
	for _, need := range []struct{ group, resource, sub, verb string }{
		{"batch", "jobs", "", "create"}, {"batch", "jobs", "", "delete"}, {"batch", "jobs", "", "list"},
		{"", "configmaps", "", "create"}, {"", "configmaps", "", "patch"}, {"", "pods", "", "watch"}, {"", "pods", "log", "get"},
	} {
		if err := k.can(ctx, need.group, need.resource, need.sub, need.verb); err != nil {
			return err
		}
	}
	if pullPolicy(k.image) != corev1.PullNever {
		return nil
	}
	nodes, err := k.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) {
		k.log.Warn("kubernetes engine: cannot list nodes to check the image is on one; a missing image fails the first run", "image", k.image)
		return nil
	} else if err != nil {
		return k.apiError("list nodes", err)
	}
	for _, n := range nodes.Items {
		for _, img := range n.Status.Images {
			for _, name := range img.Names {
				if name == k.image {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("kubernetes engine: image %s is on none of the cluster's %d node(s), and an image under localhost/ cannot be pulled: import it on the nodes (scripts/image.sh runtime OUT.tar; ctr -n k8s.io images import OUT.tar), or push it to a registry and give that name with --image", k.image, len(nodes.Items))
}

// can asks the API server whether Slipway's credentials may do verb on resource in the namespace.
func (k *Kube) can(ctx context.Context, group, res, sub, verb string) error {
	review, err := k.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, selfReview(k.namespace, group, res, sub, verb), metav1.CreateOptions{})
	if err != nil {
		return k.apiError("check permissions", err)
	}
	if !review.Status.Allowed {
		what := res
		if sub != "" {
			what += "/" + sub
		}
		return fmt.Errorf("kubernetes engine: the credentials of %s may not %s %s in namespace %s: bind the Role of deploy/kubernetes/rbac.yaml to Slipway's service account or user", k.host, verb, what, k.namespace)
	}
	return nil
}

func (k *Kube) apiError(doing string, err error) error {
	switch {
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("kubernetes engine: %s: the API server %s refused the credentials (401): check the token or certificate in the kubeconfig", doing, k.host)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("kubernetes engine: %s: forbidden by %s: %v", doing, k.host, err)
	}
	return fmt.Errorf("kubernetes engine: %s: the API server %s did not answer: %w", doing, k.host, err)
}

// record is what a later server needs to follow a run (StateDir/kube.json).
type record struct {
	Job        string    `json:"job"`
	OutputsDir string    `json:"outputs_dir"`
	Cursor     time.Time `json:"cursor"`          // time of the last log line delivered
	AtCursor   int       `json:"lines_at_cursor"` // how many lines with exactly that time were delivered
}

func recordPath(stateDir string) string { return filepath.Join(stateDir, "kube.json") }

func readRecord(stateDir string) (record, error) {
	var r record
	b, err := os.ReadFile(recordPath(stateDir))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func writeRecord(stateDir string, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := recordPath(stateDir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, recordPath(stateDir))
}

// Start creates the run's ConfigMap and Job (server-side apply: a retried Start changes nothing) and follows
// the pod.
func (k *Kube) Start(ctx context.Context, spec Spec) (Handle, error) {
	ps, err := translate(spec)
	if err != nil {
		return Handle{}, err
	}
	name := jobName(spec.ID)
	rec := record{Job: name, OutputsDir: ps.outputsDir}
	if err := writeRecord(spec.StateDir, rec); err != nil {
		return Handle{}, fmt.Errorf("kubernetes executor: run %s: %w", spec.ID, err)
	}
	apply := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	cm := corev1ac.ConfigMap(name, k.namespace).WithLabels(labels(spec.ID)).
		WithBinaryData(map[string][]byte{"files.tar": ps.files})
	if _, err := k.client.CoreV1().ConfigMaps(k.namespace).Apply(ctx, cm, apply); err != nil {
		return Handle{}, k.apiError("create the run's ConfigMap "+name, err)
	}
	job, err := k.client.BatchV1().Jobs(k.namespace).Apply(ctx, k.jobApply(spec, ps), apply)
	if err != nil {
		k.deleteConfigMap(name)
		return Handle{}, k.apiError("create Job "+name, err)
	}
	// The Job owns the ConfigMap from now on: deleting the Job (cancel, or by hand) removes it too.
	owner := metav1ac.OwnerReference().WithAPIVersion("batch/v1").WithKind("Job").WithName(name).
		WithUID(job.UID).WithBlockOwnerDeletion(true)
	if _, err := k.client.CoreV1().ConfigMaps(k.namespace).Apply(ctx, cm.WithOwnerReferences(owner), apply); err != nil {
		k.log.Warn("kubernetes executor: the run's ConfigMap stays until the run ends", "configmap", name, "error", err)
	}
	k.follow(spec.ID, spec.StateDir, rec, spec.Output)
	return Handle{ID: spec.ID, StateDir: spec.StateDir}, nil
}

func (k *Kube) deleteConfigMap(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := k.client.CoreV1().ConfigMaps(k.namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		k.log.Warn("kubernetes executor: delete ConfigMap", "configmap", name, "error", err)
	}
}

func (k *Kube) get(id string) (*kubeRun, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.runs[id]
	if r == nil {
		return nil, fmt.Errorf("kubernetes executor: no run %s", id)
	}
	return r, nil
}

// Wait blocks until the run's pod has ended (or the Job is gone) and reports how.
func (k *Kube) Wait(ctx context.Context, id string) (Exit, error) {
	r, err := k.get(id)
	if err != nil {
		return Exit{}, err
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	exit, ok := r.result()
	if !ok {
		return Exit{}, errors.New("kubernetes executor: detached")
	}
	k.mu.Lock()
	delete(k.runs, id)
	k.mu.Unlock()
	return exit, nil
}

// Stop deletes the run's Job with foreground propagation: its pod gets grace to end (SIGTERM, then SIGKILL)
// and the ConfigMap goes with it.
func (k *Kube) Stop(ctx context.Context, id string, grace time.Duration) error {
	r, err := k.get(id)
	if err != nil {
		return err
	}
	r.markStopped()
	if err := k.deleteJob(ctx, r.job, grace); err != nil {
		return err
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k *Kube) deleteJob(ctx context.Context, name string, grace time.Duration) error {
	fg := metav1.DeletePropagationForeground
	secs := int64(grace / time.Second)
	err := k.client.BatchV1().Jobs(k.namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg, GracePeriodSeconds: &secs})
	if err != nil && !apierrors.IsNotFound(err) {
		return k.apiError("delete Job "+name, err)
	}
	return nil
}

// Detach stops following the run: its Job runs on, for a later server to re-attach.
func (k *Kube) Detach(id string) bool {
	r, err := k.get(id)
	if err != nil {
		return false
	}
	r.detach()
	return true
}

// Recover re-attaches to the Job of a run started by an earlier server, found by its run-id label; ErrLost
// when there is none (its ConfigMap, if left, is removed).
func (k *Kube) Recover(ctx context.Context, h Handle, output func(string, time.Time, string)) error {
	rec, err := readRecord(h.StateDir)
	if err != nil {
		rec = record{Job: jobName(h.ID), OutputsDir: filepath.Join(h.StateDir, "outputs")}
	}
	jobs, err := k.client.BatchV1().Jobs(k.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector(h.ID)})
	if err != nil {
		return k.apiError("find the Job of run "+h.ID, err)
	}
	if len(jobs.Items) == 0 {
		k.deleteConfigMap(rec.Job)
		return ErrLost
	}
	rec.Job = jobs.Items[0].Name
	k.follow(h.ID, h.StateDir, rec, output)
	return nil
}

func selector(runID string) string {
	return ManagedByLabel + "=" + managedBy + "," + RunIDLabel + "=" + runID
}

// errDetail is the useful part of a Kubernetes message, on one line.
func errDetail(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
