package executor

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// Labels and names of what the kubernetes executor creates. Slipway touches only objects with ManagedByLabel.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "slipway"
	RunIDLabel     = "slipway.dev/run-id"
	namePrefix     = "slipway-"
	fieldManager   = "slipway"
	// podRunDir is where a run's folder (StateDir) is inside the pod: the executor rewrites StateDir to it in the
	// command, arguments, working folder and environment.
	podRunDir = "/slipway/run"
	podFiles  = "/slipway/files"
	// maxShippedFiles bounds the job's files (its artifact, script, CA certificate) that travel in the run's
	// ConfigMap: an object must stay under the API server's 1.5 MiB request limit.
	maxShippedFiles = 1 << 20
	// maxTerminationMessage is what Kubernetes keeps of a container's termination message, which carries the
	// run's outputs.json back (no volume is shared with the server).
	maxTerminationMessage = 4096
	imagePATH             = "/opt/slipway/bin:/usr/local/bin:/usr/bin:/bin"
	imagePython           = "/usr/bin/python3"
)

// podScript is the container's command (sh -c): unpack the run's files, apply the limits that are not a
// cgroup's, run the program from its working folder, and hand outputs.json back as the termination message.
const podScript = `set -u
mkdir -p ` + podRunDir + ` && tar -xf ` + podFiles + `/files.tar -C ` + podRunDir + ` || exit 120
mkdir -p "$HOME" "$TMPDIR" "$SLIPWAY_OUTPUT_DIR"
[ -n "${SLIPWAY_LIMIT_CPU_SECONDS:-}" ] && { ulimit -t "$SLIPWAY_LIMIT_CPU_SECONDS" || exit 121; }
[ -n "${SLIPWAY_LIMIT_OPEN_FILES:-}" ] && { ulimit -n "$SLIPWAY_LIMIT_OPEN_FILES" || exit 121; }
[ -n "${SLIPWAY_LIMIT_PROCESSES:-}" ] && { ulimit -p "$SLIPWAY_LIMIT_PROCESSES" || exit 121; }
unset SLIPWAY_LIMIT_CPU_SECONDS SLIPWAY_LIMIT_OPEN_FILES SLIPWAY_LIMIT_PROCESSES
cd "$SLIPWAY_WORKDIR" && unset SLIPWAY_WORKDIR || exit 120
# The shell is the container's PID 1, which ignores SIGTERM: pass a stop (cancel, timeout) on to the program.
"$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null' TERM INT
wait $child
rc=$?
while kill -0 $child 2>/dev/null; do wait $child; rc=$?; done
out="$SLIPWAY_OUTPUT_DIR/outputs.json"
if [ -s "$out" ]; then
  size=$(wc -c < "$out")
  if [ "$size" -gt 4000 ]; then
    echo "slipway: outputs.json is $size bytes; on the kubernetes engine it comes back in the pod's termination message, at most 4000 bytes" >&2
    [ "$rc" -eq 0 ] && rc=1
  else
    cat "$out" > /dev/termination-log
  fi
fi
exit $rc
`

// podSpec is a run translated for the pod: paths of the server's machine rewritten to the pod's.
type podSpec struct {
	command    []string
	env        []*corev1ac.EnvVarApplyConfiguration
	files      []byte // tar of the run's folder: what the ConfigMap carries
	outputsDir string // the run's output folder on the server (SLIPWAY_OUTPUT_DIR), where outputs.json lands
}

// translate turns a Spec into what the pod runs. The run's folder (StateDir) is shipped (but for outputs,
// scratch and logs) and mounted at podRunDir; the server's own PATH, HOME and interpreter are the image's.
func translate(spec Spec) (podSpec, error) {
	if spec.StateDir == "" {
		return podSpec{}, fmt.Errorf("kubernetes executor: run %s has no run folder to ship", spec.ID)
	}
	host := filepath.Clean(spec.StateDir)
	rewrite := func(s string) string { return strings.ReplaceAll(s, host, podRunDir) }
	env := map[string]string{}
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	var ps podSpec
	ps.outputsDir = env["SLIPWAY_OUTPUT_DIR"]
	path := spec.Path
	if python := env["SLIPWAY_PYTHON"]; python != "" && path == python {
		path = imagePython
	}
	extra := map[string][]byte{}
	if ca := env["SLIPWAY_CA_CERT"]; ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return ps, fmt.Errorf("kubernetes executor: read the CA certificate for the pod: %w", err)
		}
		extra["ca.pem"] = b
		env["SLIPWAY_CA_CERT"] = podRunDir + "/ca.pem"
	}
	env["PATH"] = imagePATH
	env["HOME"] = podRunDir + "/home"
	if _, ok := env["SLIPWAY_PYTHON"]; ok {
		env["SLIPWAY_PYTHON"] = imagePython
	}
	delete(env, "SLIPWAY_URL_FILE") // a file of the server's machine; SLIPWAY_URL says the same
	if env["TMPDIR"] == "" {
		env["TMPDIR"] = podRunDir + "/tmp"
	}
	dir := spec.Dir
	if dir == "" {
		dir = host
	}
	env["SLIPWAY_WORKDIR"] = dir
	limits := map[string]int64{"SLIPWAY_LIMIT_CPU_SECONDS": spec.Limits.CPUSeconds,
		"SLIPWAY_LIMIT_OPEN_FILES": spec.Limits.OpenFiles, "SLIPWAY_LIMIT_PROCESSES": spec.Limits.Processes}
	for k, v := range limits {
		if v > 0 {
			env[k] = strconv.FormatInt(v, 10)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		ps.env = append(ps.env, corev1ac.EnvVar().WithName(k).WithValue(rewrite(env[k])))
	}
	ps.command = []string{"/bin/sh", "-c", podScript, "slipway-run", rewrite(path)}
	for _, a := range spec.Args {
		ps.command = append(ps.command, rewrite(a))
	}
	files, err := packRunFolder(host, extra, []string{ps.outputsDir, env["TMPDIR"]})
	if err != nil {
		return ps, err
	}
	ps.files = files
	return ps, nil
}

// packRunFolder tars the run's folder for the pod, leaving out its outputs, scratch and the executor's and the
// service's own files (log, spool, kube.json), and refuses more than maxShippedFiles.
func packRunFolder(dir string, extra map[string][]byte, skip []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	skipped := map[string]bool{}
	for _, s := range skip {
		if s != "" {
			skipped[filepath.Clean(s)] = true
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if skipped[p] || (filepath.Dir(rel) == "." && !d.IsDir() && !strings.HasSuffix(rel, ".sh")) {
			// top-level files are the service's and the executor's (log, kube.json), but for a script
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil // links and special files: an artifact has none (checked at upload)
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = filepath.ToSlash(rel), 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if buf.Len()+int(info.Size()) > maxShippedFiles {
			return fmt.Errorf("the job's files are larger than %d KiB: the kubernetes engine ships them to the pod in a ConfigMap; keep large data in a bucket or a database and fetch it from the job", maxShippedFiles>>10)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes executor: pack the run's files: %w", err)
	}
	for name, b := range extra {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() > maxShippedFiles {
		return nil, fmt.Errorf("kubernetes executor: the job's files are larger than %d KiB: the kubernetes engine ships them in a ConfigMap", maxShippedFiles>>10)
	}
	return buf.Bytes(), nil
}

// jobName is the Kubernetes name of a run's Job and ConfigMap (run ids are lower-case letters, digits and '-').
func jobName(runID string) string {
	name := namePrefix + strings.ToLower(runID)
	if len(name) > 63 {
		name = name[:63]
	}
	return strings.TrimRight(name, "-")
}

func labels(runID string) map[string]string {
	return map[string]string{ManagedByLabel: managedBy, RunIDLabel: runID}
}

// pullPolicy: an image under localhost/ was built and imported on the nodes (nothing can pull it); any other
// is pulled from its registry when a node lacks it.
func pullPolicy(image string) corev1.PullPolicy {
	if strings.HasPrefix(image, "localhost/") {
		return corev1.PullNever
	}
	return corev1.PullIfNotPresent
}

// jobApply is the run's Job: one pod, never restarted (a retry is the step policy's decision, not the
// cluster's), on the host's network so that it reaches the server at the address the server gives its runs.
func (k *Kube) jobApply(spec Spec, ps podSpec) *batchv1ac.JobApplyConfiguration {
	name := jobName(spec.ID)
	container := corev1ac.Container().WithName("run").WithImage(k.image).
		WithImagePullPolicy(pullPolicy(k.image)).WithCommand(ps.command...).WithEnv(ps.env...).
		WithTerminationMessagePolicy(corev1.TerminationMessageReadFile).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("files").WithMountPath(podFiles).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("run").WithMountPath(podRunDir))
	if req := KubeResources(spec.Resources, spec.Limits.MemoryBytes); req != nil {
		container.WithResources(req)
	}
	pod := corev1ac.PodSpec().WithRestartPolicy(corev1.RestartPolicyNever).WithHostNetwork(true).
		WithDNSPolicy(corev1.DNSClusterFirstWithHostNet).WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).WithTerminationGracePeriodSeconds(10).
		WithContainers(container).
		WithVolumes(corev1ac.Volume().WithName("files").WithConfigMap(corev1ac.ConfigMapVolumeSource().WithName(name)),
			corev1ac.Volume().WithName("run").WithEmptyDir(corev1ac.EmptyDirVolumeSource()))
	return batchv1ac.Job(name, k.namespace).WithLabels(labels(spec.ID)).
		WithSpec(batchv1ac.JobSpec().WithBackoffLimit(0).WithTTLSecondsAfterFinished(24 * 3600).
			WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels(spec.ID)).WithSpec(pod)))
}
