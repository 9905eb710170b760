package kubereplica

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/executor"
)

// Paths inside a replica pod (an emptyDir at podDir).
const (
	podDir        = "/slipway"
	podStatusFile = podDir + "/status.json"
	podCacheDir   = podDir + "/cache"
	podBinary     = "/opt/slipway/bin/slipway"
	specKey       = "spec" // the Secret's key holding the encoded replica spec
)

// apply writes version v's Secret and Deployment at replicas, by server-side apply, unless the Deployment
// already has them (same replica count, same spec hash): a reconcile that changes nothing writes nothing.
func (c *Controller) apply(ctx context.Context, name string, v, replicas int, t Template, cur *appsv1.Deployment) error {
	obj := ObjectName(name, v)
	hash := templateHash(c.cfg, t)
	if cur != nil && cur.Spec.Replicas != nil && int(*cur.Spec.Replicas) == replicas &&
		cur.Spec.Template.Annotations[specHashAnnotation] == hash {
		return nil
	}
	// The Secret is owned by its Deployment (deleted with it) once the Deployment exists; before, it is
	// written first so that the first pods find it.
	var owner *types.UID
	if cur != nil {
		owner = &cur.UID
	}
	if err := c.applySecret(ctx, name, v, obj, t, owner); err != nil {
		return err
	}
	d, err := c.cfg.Client.AppsV1().Deployments(c.cfg.Namespace).Apply(ctx, c.deployment(name, v, obj, replicas, hash, t),
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply Deployment %s/%s: %w", c.cfg.Namespace, obj, err)
	}
	if owner == nil {
		if err := c.applySecret(ctx, name, v, obj, t, &d.UID); err != nil {
			return err
		}
	}
	c.cfg.Log.Info("kubernetes engine: applied replica Deployment", "deployment", name, "version", v, "name", obj, "replicas", replicas)
	return nil
}

func labels(name string, v int) map[string]string {
	return map[string]string{ManagedByLabel: managedBy, ComponentLabel: component, DeploymentLabel: labelValue(name),
		VersionLabel: strconv.Itoa(v)}
}

func (c *Controller) applySecret(ctx context.Context, name string, v int, obj string, t Template, owner *types.UID) error {
	sec := corev1ac.Secret(obj, c.cfg.Namespace).WithLabels(labels(name, v)).
		WithAnnotations(map[string]string{deploymentAnnotation: name}).
		WithType(corev1.SecretTypeOpaque).
		WithStringData(map[string]string{specKey: t.Spec.Encode()})
	if owner != nil {
		sec.WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion("apps/v1").WithKind("Deployment").
			WithName(obj).WithUID(*owner))
	}
	if _, err := c.cfg.Client.CoreV1().Secrets(c.cfg.Namespace).Apply(ctx, sec, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply Secret %s/%s: %w", c.cfg.Namespace, obj, err)
	}
	return nil
}

// templateHash covers everything the pods read only when they start: the replica spec (in the Secret) and the
// pod's shape.
func templateHash(cfg Config, t Template) string {
	b, _ := json.Marshal(struct { // plain fields always marshal
		Spec        string
		Env         map[string]string
		Image       string
		HostNetwork bool
		Resources   *slipway.Resources `json:",omitempty"` // omitted when nil: the pods of a server before resources keep their hash
	}{t.Spec.Encode(), t.Env, cfg.Image, cfg.HostNetwork, t.Resources})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// deployment is the apply configuration of version v's Deployment.
func (c *Controller) deployment(name string, v int, obj string, replicas int, hash string, t Template) *appsv1ac.DeploymentApplyConfiguration {
	l := labels(name, v)
	listen, advertise := "0.0.0.0:"+strconv.Itoa(WorkerPort), "$(SLIPWAY_POD_IP):"+strconv.Itoa(WorkerPort)
	if c.cfg.HostNetwork {
		// A free port of the node (several replicas share it), advertised at the node's address.
		listen, advertise = "$(SLIPWAY_HOST_IP):0", "$(SLIPWAY_HOST_IP):0"
	}
	env := []*corev1ac.EnvVarApplyConfiguration{
		corev1ac.EnvVar().WithName("SLIPWAY_REPLICA_SPEC").WithValueFrom(corev1ac.EnvVarSource().
			WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(obj).WithKey(specKey))),
		corev1ac.EnvVar().WithName("SLIPWAY_POD_NAME").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("metadata.name"))),
		corev1ac.EnvVar().WithName("SLIPWAY_POD_IP").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("status.podIP"))),
		corev1ac.EnvVar().WithName("SLIPWAY_HOST_IP").WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath("status.hostIP"))),
		corev1ac.EnvVar().WithName("HOME").WithValue(podDir + "/home"),
		corev1ac.EnvVar().WithName("TMPDIR").WithValue(podDir + "/tmp"),
	}
	var own []string
	for _, k := range slices.Sorted(maps.Keys(t.Env)) {
		if strings.HasPrefix(k, "SLIPWAY_") || k == "HOME" || k == "TMPDIR" {
			continue // the worker's own
		}
		env = append(env, corev1ac.EnvVar().WithName(k).WithValue(t.Env[k]))
		own = append(own, k)
	}
	env = append(env, corev1ac.EnvVar().WithName("SLIPWAY_MODEL_ENV").WithValue(strings.Join(own, ",")))
	probe := func(args ...string) *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().WithExec(corev1ac.ExecAction().WithCommand(append([]string{podBinary, "worker", "probe", "--status-file", podStatusFile}, args...)...)).
			WithTimeoutSeconds(10) // an exec on a busy node can take seconds
	}
	container := corev1ac.Container().WithName("worker").WithImage(c.cfg.Image).WithImagePullPolicy(pullPolicy(c.cfg.Image)).
		WithCommand(podBinary, "worker", "serve", "--listen", listen, "--advertise", advertise,
			"--cache-dir", podCacheDir, "--status-file", podStatusFile).
		WithEnv(env...).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("slipway").WithMountPath(podDir)).
		// Loading a model may take minutes: liveness and readiness begin once the worker has announced itself.
		WithStartupProbe(probe().WithPeriodSeconds(2).WithFailureThreshold(300)).
		// Not ready after 10 s without an accepted heartbeat: no new session goes to the pod.
		WithReadinessProbe(probe().WithPeriodSeconds(2).WithFailureThreshold(5)).
		// Alive is "still sends heartbeats", accepted or not: a server that restarts is no reason to restart.
		WithLivenessProbe(probe("--live").WithPeriodSeconds(10).WithFailureThreshold(6))
	if req := executor.KubeResources(t.Resources, 0); req != nil {
		container.WithResources(req)
	}
	if !c.cfg.HostNetwork {
		container.WithPorts(corev1ac.ContainerPort().WithName("replica").WithContainerPort(WorkerPort))
	}
	pod := corev1ac.PodSpec().WithContainers(container).
		WithVolumes(corev1ac.Volume().WithName("slipway").WithEmptyDir(corev1ac.EmptyDirVolumeSource())).
		WithAutomountServiceAccountToken(false).
		WithTerminationGracePeriodSeconds(15).
		WithEnableServiceLinks(false)
	if c.cfg.HostNetwork {
		pod.WithHostNetwork(true).WithDNSPolicy(corev1.DNSClusterFirstWithHostNet)
	}
	return appsv1ac.Deployment(obj, c.cfg.Namespace).WithLabels(l).
		WithAnnotations(map[string]string{deploymentAnnotation: name}).
		WithSpec(appsv1ac.DeploymentSpec().WithReplicas(int32(replicas)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(l)).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(l).
				WithAnnotations(map[string]string{specHashAnnotation: hash, deploymentAnnotation: name}).
				WithSpec(pod)))
}

// pullPolicy: an image under localhost/ was built and imported on the nodes, nothing can pull it.
func pullPolicy(image string) corev1.PullPolicy {
	if strings.HasPrefix(image, "localhost/") {
		return corev1.PullNever
	}
	return corev1.PullIfNotPresent
}
