package executor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeRun is a run this server follows: its pod's state and log.
type kubeRun struct {
	id, job, stateDir string
	output            func(stream string, at time.Time, line string)
	done              chan struct{} // closed when the follower has its exit (or was detached)
	exit              Exit
	last              lastLine
	cancel            context.CancelFunc // ends the follower and its log stream (Detach)

	mu       sync.Mutex
	rec      record
	saved    time.Time // when rec was last written
	stopped  bool      // Stop deleted the Job
	detached bool
	hasExit  bool // exit is the run's
	// A stream opened at a cursor replays lines from the cursor's second on: those before resumeAt, and the
	// first skip lines at resumeAt, were delivered already (by this server or an earlier one).
	resumeAt time.Time
	skip     int
}

func (r *kubeRun) markStopped() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
}

func (r *kubeRun) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

func (r *kubeRun) detach() {
	r.mu.Lock()
	r.detached = true
	r.mu.Unlock()
	r.cancel()
	<-r.done
	r.saveCursor(true)
}

// result is the run's exit, if the follower learnt it (it may have, just before a Detach).
func (r *kubeRun) result() (Exit, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exit, r.hasExit
}

// saveCursor records how far the log was delivered, at most twice a second unless forced: a server that
// crashes replays at most that much of the log after its restart.
func (r *kubeRun) saveCursor(force bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !force && time.Since(r.saved) < 500*time.Millisecond {
		return
	}
	r.saved = time.Now()
	_ = writeRecord(r.stateDir, r.rec) // best effort: a lost cursor only replays lines after a restart
}

// deliver passes one log line on unless an earlier server (or stream) already delivered it.
func (r *kubeRun) deliver(at time.Time, line string) {
	r.mu.Lock()
	if at.Before(r.resumeAt) || (at.Equal(r.resumeAt) && r.skip > 0) {
		if at.Equal(r.resumeAt) {
			r.skip--
		}
		r.mu.Unlock()
		return
	}
	if at.Equal(r.rec.Cursor) {
		r.rec.AtCursor++
	} else {
		r.rec.Cursor, r.rec.AtCursor = at, 1
	}
	r.mu.Unlock()
	r.last.set(line)
	r.output("stdout", at, line)
	r.saveCursor(false)
}

// follow starts the follower of a run (owned by the executor; it ends when the pod has ended or at Detach).
func (k *Kube) follow(id, stateDir string, rec record, output func(string, time.Time, string)) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &kubeRun{id: id, job: rec.Job, stateDir: stateDir, output: orDiscard(output), done: make(chan struct{}),
		cancel: cancel, rec: rec}
	k.mu.Lock()
	k.runs[id] = r
	k.mu.Unlock()
	go func() {
		defer close(r.done)
		defer cancel()
		k.followRun(ctx, r)
	}()
}

// followRun watches the run's pod until it has ended, streams its log meanwhile, and records the exit.
func (k *Kube) followRun(ctx context.Context, r *kubeRun) {
	ended := make(chan struct{})
	logsDone := make(chan struct{})
	logging := false
	note := ""
	var exit *Exit
	for exit == nil {
		pods, err := k.client.CoreV1().Pods(k.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector(r.id)})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			k.log.Warn("kubernetes executor: list the run's pods", "run_id", r.id, "error", err)
			sleep(ctx, 2*time.Second)
			continue
		}
		if pod := newest(pods.Items); pod != nil {
			st := k.observe(pod)
			if st.started && !logging {
				logging = true
				go func() { // owned by followRun: ends at the container's end (ended) or ctx
					defer close(logsDone)
					k.streamLogs(ctx, r, pod.Name, ended)
				}()
			}
			if st.note != "" && st.note != note {
				note = st.note
				r.output("stderr", time.Now(), "slipway: "+st.note)
			}
			exit = st.exit
		} else if exit, err = k.jobGone(ctx, r); err != nil {
			k.log.Warn("kubernetes executor: read the run's Job", "run_id", r.id, "error", err)
		}
		if exit == nil {
			k.waitForPods(ctx, r.id, pods.ResourceVersion)
		}
	}
	close(ended)
	if logging {
		select { // the stream ends by itself once the container has; a stuck one is given up
		case <-logsDone:
		case <-time.After(15 * time.Second):
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return // detached
	}
	r.saveCursor(true)
	if r.isStopped() {
		exit = &Exit{Code: -1, Signal: "terminated"}
	} else {
		k.deleteEnded(r.job)
	}
	if exit.LastLine == "" {
		exit.LastLine = r.last.get()
	}
	r.mu.Lock()
	r.exit, r.hasExit = *exit, true
	r.mu.Unlock()
}

// deleteEnded removes the Job of a run that ended (and with it its pod and ConfigMap): the run's record in
// Slipway is the history, the Job's TTL a second guard.
func (k *Kube) deleteEnded(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	err := k.client.BatchV1().Jobs(k.namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		k.log.Warn("kubernetes executor: delete the ended run's Job", "job", name, "error", err)
	}
}

// jobGone is the exit of a run without a pod: its Job was deleted, or failed (its pod evicted or lost with its
// node); nil while the Job still waits for its pod.
func (k *Kube) jobGone(ctx context.Context, r *kubeRun) (*Exit, error) {
	job, err := k.client.BatchV1().Jobs(k.namespace).Get(ctx, r.job, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &Exit{Code: -1, Reason: fmt.Sprintf("the Kubernetes Job %s/%s was deleted while the run was in progress", k.namespace, r.job)}, nil
	} else if err != nil {
		return nil, err
	}
	for _, c := range job.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return &Exit{Code: -1, Reason: fmt.Sprintf("the Kubernetes Job failed (%s): %s", c.Reason, errDetail(c.Message))}, nil
		}
	}
	return nil, nil
}

// waitForPods returns at the next change of the run's pods after resourceVersion, or after a few seconds (then
// the Job is looked at again).
func (k *Kube) waitForPods(ctx context.Context, id, resourceVersion string) {
	timeout := int64(5)
	w, err := k.client.CoreV1().Pods(k.namespace).Watch(ctx, metav1.ListOptions{LabelSelector: selector(id),
		ResourceVersion: resourceVersion, TimeoutSeconds: &timeout, AllowWatchBookmarks: false})
	if err != nil {
		sleep(ctx, time.Second)
		return
	}
	defer w.Stop()
	select {
	case _, ok := <-w.ResultChan():
		if !ok { // the watch ended without an event: do not spin if the API server keeps closing it early
			sleep(ctx, 200*time.Millisecond)
		}
	case <-ctx.Done():
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func newest(pods []corev1.Pod) *corev1.Pod {
	var p *corev1.Pod
	for i := range pods {
		if p == nil || pods[i].CreationTimestamp.After(p.CreationTimestamp.Time) {
			p = &pods[i]
		}
	}
	return p
}

// podState is what a pod says about the run.
type podState struct {
	started bool   // the container runs or ran: its log can be read
	exit    *Exit  // the run is over
	note    string // why it is not running yet, for the run's log
}

// observe maps a pod's status to the run's: the container's exit code, an OOM kill, a pull or start failure
// that will not heal by waiting, an evicted pod; or why it is still waiting.
func (k *Kube) observe(pod *corev1.Pod) podState {
	var st podState
	node := pod.Spec.NodeName
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != "run" {
			continue
		}
		switch {
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			st.started = true
			e := Exit{Code: int(t.ExitCode)}
			if t.Reason == "OOMKilled" {
				e.Reason = fmt.Sprintf("OOM-killed on node %s: the run used more memory than its limit (limits.memory_bytes %s)", node, memoryLimit(pod))
			} else if t.ExitCode > 128 && t.ExitCode < 128+65 {
				e.Code, e.Signal = -1, syscall.Signal(t.ExitCode-128).String()
			}
			if t.Message != "" {
				if err := k.writeOutputs(pod, t.Message); err != nil {
					e.Reason = err.Error()
				}
			}
			st.exit = &e
			return st
		case cs.State.Running != nil:
			st.started = true
		case cs.State.Waiting != nil:
			w := cs.State.Waiting
			msg := errDetail(w.Message)
			switch w.Reason {
			case "ErrImageNeverPull":
				st.exit = &Exit{Code: -1, Reason: fmt.Sprintf("image %s is not on node %s, and its pull policy is Never (a localhost/ image): import it on the node (scripts/image.sh; ctr -n k8s.io images import) or give --image an image a registry serves", k.image, node)}
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
				st.exit = &Exit{Code: -1, Reason: fmt.Sprintf("image %s could not be pulled on node %s (%s): %s", k.image, node, w.Reason, msg)}
			case "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "StartError":
				st.exit = &Exit{Code: -1, Reason: fmt.Sprintf("the run's container could not start on node %s (%s): %s", node, w.Reason, msg)}
			default:
				st.note = "waiting for the pod " + pod.Name + ": " + w.Reason
			}
		}
	}
	if st.exit == nil && pod.Status.Phase == corev1.PodFailed {
		st.exit = &Exit{Code: -1, Reason: fmt.Sprintf("the pod %s failed (%s): %s", pod.Name, pod.Status.Reason, errDetail(pod.Status.Message))}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && st.note == "" {
			st.note = fmt.Sprintf("the pod %s is not scheduled yet (%s): %s", pod.Name, c.Reason, errDetail(c.Message))
		}
	}
	return st
}

func memoryLimit(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			return q.String()
		}
	}
	return "none"
}

// writeOutputs stores the run's outputs.json, which came back as the container's termination message.
func (k *Kube) writeOutputs(pod *corev1.Pod, msg string) error {
	k.mu.Lock()
	var dir string
	for _, r := range k.runs {
		if r.id == pod.Labels[RunIDLabel] {
			dir = r.rec.OutputsDir
		}
	}
	k.mu.Unlock()
	if dir == "" {
		return nil
	}
	if len(msg) >= maxTerminationMessage {
		return fmt.Errorf("outputs.json did not come back whole: on the kubernetes engine it travels in the pod's termination message, at most %d bytes", maxTerminationMessage)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("outputs.json: %w", err)
	}
	tmp := filepath.Join(dir, ".outputs.json.tmp")
	if err := os.WriteFile(tmp, []byte(msg), 0o644); err != nil {
		return fmt.Errorf("outputs.json: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "outputs.json"))
}

// streamLogs follows the pod's log (with the kubelet's timestamps, so that a re-attached server or a broken
// stream resumes without repeating lines) until the container has ended and its last line was read.
func (k *Kube) streamLogs(ctx context.Context, r *kubeRun, pod string, ended <-chan struct{}) {
	for ctx.Err() == nil {
		opts := &corev1.PodLogOptions{Container: "run", Follow: true, Timestamps: true}
		r.mu.Lock()
		if !r.rec.Cursor.IsZero() {
			since := metav1.NewTime(r.rec.Cursor)
			opts.SinceTime = &since
		}
		r.resumeAt, r.skip = r.rec.Cursor, r.rec.AtCursor
		r.mu.Unlock()
		stream, err := k.logs.CoreV1().Pods(k.namespace).GetLogs(pod, opts).Stream(ctx)
		if err == nil {
			err = readLogLines(stream, r)
			_ = stream.Close() // read only
		}
		select {
		case <-ended:
			if err == nil || errors.Is(err, io.EOF) {
				return
			}
		default:
		}
		if ctx.Err() == nil && err != nil && !errors.Is(err, io.EOF) {
			k.log.Debug("kubernetes executor: log stream broke; resuming", "run_id", r.id, "error", err)
		}
		select {
		case <-ended:
			// one more pass reads what the container wrote last, then the stream ends by itself
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// readLogLines delivers "TIMESTAMP line" lines (bounded like the local executor's) until the stream ends.
func readLogLines(stream io.Reader, r *kubeRun) error {
	br := bufio.NewReaderSize(stream, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			s := strings.TrimRight(string(line), "\r\n")
			ts, text, _ := strings.Cut(s, " ")
			at, perr := time.Parse(time.RFC3339Nano, ts)
			if perr != nil {
				at, text = time.Now(), s
			}
			r.deliver(at, text)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return err
		}
	}
}

// selfReview asks whether the caller may do verb on group/resource[/sub] in namespace.
func selfReview(namespace, group, res, sub, verb string) *authorizationv1.SelfSubjectAccessReview {
	return &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Group: group, Resource: res,
			Subresource: sub, Verb: verb}}}
}
