package kubereplica

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podProblem says, in words a person can act on, why a replica pod's worker cannot serve and will not by
// waiting: its image cannot be pulled (or is not on a node that may not pull it), its container cannot be
// created, or the worker was OOM-killed. "" when nothing is wrong that waiting cannot heal (still pulling,
// still loading, restarted after a kill that was not the memory limit's). since is when the problem was seen
// by the kubelet (for an OOM kill: when the killed container ended), so that a Start does not fail on an old
// kill from before it began.
func podProblem(p *corev1.Pod) (problem string, since time.Time) {
	node := p.Spec.NodeName
	if node == "" {
		node = "(not scheduled)"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != "worker" {
			continue
		}
		if t := oomKill(cs); t != nil {
			return fmt.Sprintf("replica pod %s was OOM-killed on node %s: the model used more memory than its limit (resources.memory_mb %s): give the deployment more memory_mb, or a smaller model",
				p.Name, node, memoryMB(p)), t.FinishedAt.Time
		}
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		msg := strings.Join(strings.Fields(w.Message), " ")
		switch w.Reason {
		case "ErrImageNeverPull":
			return fmt.Sprintf("image %s of replica pod %s is not on node %s, and its pull policy is Never (a localhost/ image): import it on the node (scripts/image.sh; ctr -n k8s.io images import) or give --image an image a registry serves",
				cs.Image, p.Name, node), time.Now()
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
			return fmt.Sprintf("image %s of replica pod %s could not be pulled on node %s (%s): %s: check --image and the node's access to its registry",
				cs.Image, p.Name, node, w.Reason, msg), time.Now()
		case "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "StartError":
			return fmt.Sprintf("the worker container of replica pod %s could not start on node %s (%s): %s", p.Name, node, w.Reason, msg), time.Now()
		}
	}
	return "", time.Time{}
}

// podOOMKilled reports whether the pod's worker container was OOM-killed (now, or before its restart).
func podOOMKilled(p *corev1.Pod) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == "worker" && oomKill(cs) != nil {
			return true
		}
	}
	return false
}

// oomKill is the worker container's OOM kill, in its current state or (restarted since) its last one.
func oomKill(cs corev1.ContainerStatus) *corev1.ContainerStateTerminated {
	if t := cs.State.Terminated; t != nil && t.Reason == "OOMKilled" {
		return t
	}
	if t := cs.LastTerminationState.Terminated; t != nil && t.Reason == "OOMKilled" {
		return t
	}
	return nil
}

func memoryMB(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			return strconv.FormatInt(q.Value()>>20, 10)
		}
	}
	return "not set"
}
