// Package kubereplica is the kubernetes engine's side of model replicas: each version a deployment serves
// (its own, its canary's, its shadow's) is a Kubernetes Deployment of `slipway worker serve` pods, written with
// server-side apply (field manager "slipway"). The pods announce themselves to the server like any network
// worker, and modelruntime.RemoteEngine connects the serving pools' replica slots to them, so queueing,
// batching, health checks and retries are the local engine's.
//
// The replica count of each Deployment is the RemoteEngine's Demand: the sessions it holds, the Starts waiting
// for a worker and the slots restarting after a crash. A pool that starts, scales, rolls out or stops changes
// the demand, and the Controller applies it (debounced: the N Starts of a rollout are one apply). A watch of
// the pods (an informer, not polling) drops the worker of a pod that goes away or stops being ready at once.
// With several servers, every server watches the pods and holds sessions to them, but only the deployment's
// host applies its demand (Config.Applies): a new host adopts the Deployments unchanged. A version the host
// no longer demands keeps its pods while another server's following pool still uses them (Config.Followed).
//
// Slipway owns only objects with its labels (ManagedByLabel=slipway, ComponentLabel=replica): it adopts them
// after a restart by name and label, and never reads, changes or deletes anything else.
package kubereplica

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/slipway-ml/slipway"
)

// Labels of what the engine creates. The managed-by label is the job executor's too.
const (
	ManagedByLabel  = "app.kubernetes.io/managed-by"
	ComponentLabel  = "app.kubernetes.io/component"
	DeploymentLabel = "slipway.dev/deployment"
	VersionLabel    = "slipway.dev/version"
	managedBy       = "slipway"
	component       = "replica"
	fieldManager    = "slipway"
	// specHashAnnotation on the pod template: a changed replica spec (the server's URL, a rotated secret) or
	// environment rolls the pods, which read the spec from their Secret only when they start.
	specHashAnnotation = "slipway.dev/spec-hash"
	// deploymentAnnotation keeps the Slipway deployment's full name (its label may be shortened).
	deploymentAnnotation = "slipway.dev/deployment"
)

// Template is what the pods of one version of a deployment run.
type Template struct {
	Spec slipway.ReplicaSpec // the worker's replica spec (its secret travels in a Secret)
	Env  map[string]string   // the deployment's environment (threads and its own "env")
	// Resources are each pod's requests and limits (nil: none).
	Resources *slipway.Resources
}

// ErrNotServed is what Config.Template returns (wrapped) for a version the deployment no longer serves, or a
// deployment that no longer exists: its Deployment is deleted once no replica of it is wanted.
var ErrNotServed = errors.New("version not served")

// Config wires a Controller.
type Config struct {
	Client kubernetes.Interface // API calls (with a request timeout)
	Watch  kubernetes.Interface // the pod watch (no request timeout: a watch lasts)
	// Namespace, Image and HostNetwork say where and how the pods run. With HostNetwork each worker listens
	// on a free port of its node (the test cluster has no pod network); without, on WorkerPort of its pod's IP.
	Namespace   string
	Image       string
	HostNetwork bool
	// Demand is how many workers each version of a deployment needs (RemoteEngine.Demand).
	Demand func(deployment string) map[int]int
	// Template says what a version's pods run; ErrNotServed for a version (or deployment) that is gone.
	Template func(ctx context.Context, deployment string, version int) (Template, error)
	// PodLost is called when a replica pod is deleted, terminating, failed, or its worker container is not
	// running (killed, crashed, restarting): its worker is dropped at once. A pod that only fails its
	// readiness probe is not lost: it gets no new session (PodReady) but keeps the ones it has, which the
	// pools' health checks watch (a probe that times out on a busy node must not cut a healthy session).
	PodLost func(pod string)
	// PodReadied is called when a replica pod is ready: it wakes the Starts waiting for a worker.
	PodReadied func(pod string)
	// PodFailing, if set, is called when a pod of version v of a deployment cannot serve and will not by
	// waiting (see podProblem: an image that cannot be pulled, an OOM kill, a container that cannot be
	// created), with the reason and when the kubelet saw it: the Starts waiting for that version's workers
	// fail with it instead of waiting out their timeout.
	PodFailing func(deployment string, version int, problem string, since time.Time)
	// PodOOMKilled, if set, is called once per pod and OOM kill (its time) when a replica pod of version v of a
	// deployment was OOM-killed, with the reason (podProblem's): a pod killed while serving restarts without
	// failing any Start, and the deployment's host shows why.
	PodOOMKilled func(deployment string, version int, problem string, at time.Time)
	// Applies, if set, says whether this server decides the replica count of a deployment's Deployments (it
	// hosts the deployment, or nobody does). With several servers reaching the same pods, each holds sessions
	// and so has a demand of its own, but only the host's is the count: the others use the pods that are ready.
	Applies func(ctx context.Context, deployment string) bool
	// Followed, if set, returns the versions of a deployment whose pods another server's following pool still
	// holds sessions with. A version this server no longer demands keeps its pods (neither scaled to zero nor
	// deleted) while it is followed, and is looked at again every couple of seconds: the follower moves to the
	// new version's pods first, so that a rollout fails none of its requests.
	Followed func(ctx context.Context, deployment string) (map[int]bool, error)
	// Debounce is how long changes of the demand are gathered before they are applied (500 ms when 0).
	Debounce time.Duration
	Log      *slog.Logger
}

// WorkerPort is where a worker listens in its pod when the pods have their own network.
const WorkerPort = 7070

// Controller keeps the replica Deployments matching the demand.
type Controller struct {
	cfg Config

	mu    sync.Mutex
	dirty map[string]bool // deployments whose demand may have changed
	// demanded are the deployments whose pools this server has started: only their demand is the truth. A
	// deployment only swept (found in the cluster) may be one whose pools are still being restored: its
	// served versions are left alone, so that a restart never scales down the pods it is about to adopt.
	demanded map[string]bool
	kick     chan struct{}
	problems map[string]string // the last problem logged of each pod (podProblem), so it is logged once
	retrying map[string]bool   // deployments with a look again scheduled (retryLater): one at a time
	kept     map[string]bool   // "deployment@version" kept for a following server (logged once)

	pods   cache.SharedIndexInformer
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	applyMu sync.Mutex // one reconcile or delete at a time
}

// New returns a stopped Controller; Start starts its watch and loop.
func New(cfg Config) *Controller {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 500 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{cfg: cfg, dirty: map[string]bool{}, demanded: map[string]bool{}, problems: map[string]string{}, retrying: map[string]bool{}, kept: map[string]bool{}, kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Watch, 0, informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = ownedSelector() }))
	c.pods = factory.Core().V1().Pods().Informer()
	return c
}

func ownedSelector() string {
	return ManagedByLabel + "=" + managedBy + "," + ComponentLabel + "=" + component
}

// Start starts the pod watch (and waits for its first list, so that PodReady answers from the start) and the
// apply loop. Stop ends both.
func (c *Controller) Start(ctx context.Context) error {
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.podEvent(obj) },
		UpdateFunc: func(_, obj any) { c.podEvent(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				c.mu.Lock()
				delete(c.problems, p.Name)
				c.mu.Unlock()
				c.cfg.PodLost(p.Name)
			}
		},
	}); err != nil {
		return fmt.Errorf("kubernetes engine: watch replica pods: %w", err)
	}
	c.wg.Add(1)
	go func() { // owned by the controller: ends on Stop
		defer c.wg.Done()
		c.pods.Run(c.ctx.Done())
	}()
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced) {
		c.Stop()
		return fmt.Errorf("kubernetes engine: the watch of replica pods in %s did not start: %w", c.cfg.Namespace, ctx.Err())
	}
	c.wg.Add(1)
	go func() { // owned by the controller: ends on Stop
		defer c.wg.Done()
		c.loop()
	}()
	return nil
}

// Stop ends the watch and the loop. The Deployments stay: the next server adopts them.
func (c *Controller) Stop() {
	c.cancel()
	c.wg.Wait()
}

func (c *Controller) podEvent(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	switch {
	case podLost(p):
		c.cfg.PodLost(p.Name)
	case podReady(p):
		c.cfg.PodReadied(p.Name)
	}
	if c.cfg.PodFailing == nil || p.DeletionTimestamp != nil {
		return
	}
	problem, since := podProblem(p)
	v, err := strconv.Atoi(p.Labels[VersionLabel])
	if problem == "" || err != nil || p.Annotations[deploymentAnnotation] == "" {
		return
	}
	c.mu.Lock()
	first := c.problems[p.Name] != problem
	c.problems[p.Name] = problem
	c.mu.Unlock()
	if first {
		c.cfg.Log.Warn("kubernetes engine: replica pod cannot serve", "pod", p.Name, "problem", problem)
		if c.cfg.PodOOMKilled != nil && podOOMKilled(p) {
			c.cfg.PodOOMKilled(p.Annotations[deploymentAnnotation], v, problem, since)
		}
	}
	c.cfg.PodFailing(p.Annotations[deploymentAnnotation], v, problem, since)
}

// podLost: the pod's worker cannot be serving (the pod is going, or its container is not running).
func podLost(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return true
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil {
			return true
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodReady reports whether the replica pod named pod exists and is ready (from the watch's cache).
func (c *Controller) PodReady(pod string) bool {
	obj, ok, err := c.pods.GetStore().GetByKey(c.cfg.Namespace + "/" + pod)
	if err != nil || !ok {
		return false
	}
	p, ok := obj.(*corev1.Pod)
	return ok && podReady(p)
}

// Keeps reports whether the watch sees a pod of version v of deployment that is not being deleted: its
// Deployment is kept (the host scales it away once no server's pool uses it).
func (c *Controller) Keeps(deployment string, v int) bool {
	want := strconv.Itoa(v)
	for _, obj := range c.pods.GetStore().List() {
		p, ok := obj.(*corev1.Pod)
		if ok && p.DeletionTimestamp == nil && p.Annotations[deploymentAnnotation] == deployment && p.Labels[VersionLabel] == want {
			return true
		}
	}
	return false
}

// Changed marks a deployment's demand as changed; the loop applies it after the debounce. It never blocks.
func (c *Controller) Changed(deployment string) {
	c.mu.Lock()
	c.demanded[deployment] = true
	c.mu.Unlock()
	c.mark(deployment)
}

func (c *Controller) mark(deployment string) {
	c.mu.Lock()
	c.dirty[deployment] = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Sweep marks every deployment that has replica Deployments in the namespace, so that the loop deletes those
// of deployments that are gone and of versions no longer served (while no server ran). A served version is
// never scaled down by a sweep alone: see reconcile.
func (c *Controller) Sweep(ctx context.Context) error {
	list, err := c.cfg.Client.AppsV1().Deployments(c.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: ownedSelector()})
	if err != nil {
		return fmt.Errorf("kubernetes engine: list replica Deployments: %w", err)
	}
	for _, d := range list.Items {
		if name := d.Annotations[deploymentAnnotation]; name != "" {
			c.mark(name)
		}
	}
	return nil
}

func (c *Controller) loop() {
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		}
		// Gather: the Starts of one rollout arrive within moments of each other.
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.cfg.Debounce):
		}
		c.mu.Lock()
		names := slices.Sorted(maps.Keys(c.dirty))
		clear(c.dirty)
		c.mu.Unlock()
		for _, name := range names {
			if err := c.reconcile(c.ctx, name); err != nil && c.ctx.Err() == nil {
				c.cfg.Log.Warn("kubernetes engine: replica Deployments not applied; retrying", "deployment", name, "error", err)
				c.retryLater(name)
			}
		}
	}
}

func (c *Controller) retryLater(name string) {
	c.mu.Lock()
	if c.retrying[name] {
		c.mu.Unlock()
		return
	}
	c.retrying[name] = true
	c.mu.Unlock()
	c.wg.Add(1)
	go func() { // owned by the controller: ends after the delay or on Stop
		defer c.wg.Done()
		select {
		case <-c.ctx.Done():
		case <-time.After(2 * time.Second):
			c.mu.Lock()
			delete(c.retrying, name)
			c.mu.Unlock()
			c.mark(name)
		}
	}()
}

// reconcile applies the demand of one deployment: each version wanted gets its Deployment at the wanted
// replica count (0 for a version served with no replica: deactivated); a version not served and not wanted
// loses its Deployment and Secret.
func (c *Controller) reconcile(ctx context.Context, name string) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if c.cfg.Applies != nil && !c.cfg.Applies(ctx, name) {
		return nil // another server hosts it: its demand is the count (it applies it, and adopts on a takeover)
	}
	demand := c.cfg.Demand(name)
	c.mu.Lock()
	demanded := c.demanded[name]
	c.mu.Unlock()
	existing, err := c.list(ctx, name)
	if err != nil {
		return err
	}
	followed := map[int]bool{}
	if c.cfg.Followed != nil {
		if followed, err = c.cfg.Followed(ctx, name); err != nil {
			return err
		}
	}
	versions := map[int]bool{}
	for v := range demand {
		versions[v] = true
	}
	for v := range existing {
		versions[v] = true
	}
	var errs []error
	for _, v := range slices.Sorted(maps.Keys(versions)) {
		want := demand[v]
		if keepFollowed(want, followed[v], existing[v]) {
			c.keeping(name, v, true)
			c.retryLater(name) // until the follower has moved on
			continue
		}
		c.keeping(name, v, false)
		t, err := c.cfg.Template(ctx, name, v)
		switch {
		case errors.Is(err, ErrNotServed) && want == 0:
			if existing[v] != nil {
				errs = append(errs, c.deleteVersion(ctx, existing[v]))
			}
			continue
		case errors.Is(err, ErrNotServed):
			continue // the old version of a rollout, still serving until the new one is ready: left as it is
		case err != nil:
			errs = append(errs, fmt.Errorf("version %d: %w", v, err))
			continue
		case !demanded:
			continue // served, and no pool of this server has asked for it yet (see demanded)
		}
		errs = append(errs, c.apply(ctx, name, v, want, t, existing[v]))
	}
	return errors.Join(errs...)
}

// keeping records (and logs, once) that version v's pods are kept for a following server, or no longer.
func (c *Controller) keeping(name string, v int, kept bool) {
	key := name + "@" + strconv.Itoa(v)
	c.mu.Lock()
	was := c.kept[key]
	if kept {
		c.kept[key] = true
	} else {
		delete(c.kept, key)
	}
	c.mu.Unlock()
	switch {
	case kept && !was:
		c.cfg.Log.Info("kubernetes engine: a version's pods kept for a following server until it has moved on", "deployment", name, "version", v)
	case !kept && was:
		c.cfg.Log.Info("kubernetes engine: no following server uses the version's pods any more", "deployment", name, "version", v)
	}
}

// keepFollowed says whether a version's Deployment stays as it is although this server wants none of its
// pods: another server's following pool still holds sessions with them (a rollout it has not finished).
func keepFollowed(want int, followed bool, existing *appsv1.Deployment) bool {
	return want == 0 && followed && existing != nil && (existing.Spec.Replicas == nil || *existing.Spec.Replicas > 0)
}

// list returns the deployment's replica Deployments by version.
func (c *Controller) list(ctx context.Context, name string) (map[int]*appsv1.Deployment, error) {
	list, err := c.cfg.Client.AppsV1().Deployments(c.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: ownedSelector() + "," + DeploymentLabel + "=" + labelValue(name)})
	if err != nil {
		return nil, fmt.Errorf("list the replica Deployments of %s: %w", name, err)
	}
	out := map[int]*appsv1.Deployment{}
	for i := range list.Items {
		d := &list.Items[i]
		if d.Annotations[deploymentAnnotation] != name { // a shortened label shared by two long names
			continue
		}
		if v, err := strconv.Atoi(d.Labels[VersionLabel]); err == nil {
			out[v] = d
		}
	}
	return out, nil
}

// Delete removes every replica Deployment and Secret of a deployment (deleted in Slipway). Their pods go with
// them (foreground deletion is not awaited: the server does not need to).
func (c *Controller) Delete(ctx context.Context, name string) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	existing, err := c.list(ctx, name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.demanded, name)
	c.mu.Unlock()
	var errs []error
	for _, d := range existing {
		errs = append(errs, c.deleteVersion(ctx, d))
	}
	return errors.Join(errs...)
}

func (c *Controller) deleteVersion(ctx context.Context, d *appsv1.Deployment) error {
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	err := c.cfg.Client.AppsV1().Deployments(c.cfg.Namespace).Delete(ctx, d.Name, opts)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Deployment %s/%s: %w", c.cfg.Namespace, d.Name, err)
	}
	err = c.cfg.Client.CoreV1().Secrets(c.cfg.Namespace).Delete(ctx, d.Name, opts)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Secret %s/%s: %w", c.cfg.Namespace, d.Name, err)
	}

	c.cfg.Log.Info("kubernetes engine: deleted replica Deployment", "deployment", d.Annotations[deploymentAnnotation], "name", d.Name)
	return nil
}

// ObjectName is the name of the Deployment (and Secret) of version v of deployment name: "slipway-" and the
// name, made a DNS label ('.' and '_' become '-'), shortened with a hash of the full name when it is long or
// had to change, so that its pods' names stay within 63 characters.
func ObjectName(name string, v int) string {
	clean := strings.NewReplacer(".", "-", "_", "-").Replace(name)
	suffix := "-v" + strconv.Itoa(v)
	const room = 40 // the ReplicaSet's hash and the pod's suffix take 17 more
	if clean == name && len("slipway-")+len(clean)+len(suffix) <= room {
		return "slipway-" + clean + suffix
	}
	keep := min(len(clean), room-len("slipway-")-len(suffix)-9)
	return "slipway-" + strings.TrimRight(clean[:keep], "-") + "-" + shortHash(name) + suffix
}

// labelValue is name as a label value (63 characters at most).
func labelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	return name[:54] + "-" + shortHash(name)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}
