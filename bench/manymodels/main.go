// Command manymodels measures what a deployment costs in memory when many models share one server: N small
// distinct ONNX models (tiny_models.py), each pushed and deployed lazy and in-process, then asked once each;
// and K of them deployed as process replicas. It prints a Markdown table: the server's resident memory with the
// N deployments idle and unloaded, with all N loaded, the idle memory per in-process deployment (the server's
// growth over the N loads, per model) and per process deployment (each replica process's resident set, and its
// proportional share, PSS, which splits the pages the replicas share: the binary and ONNX Runtime), and the
// cold start (request to answer from zero) of one of the small models in-process and as a process.
//
//	go run ./bench/manymodels -bin bin/slipway -n 300 -process 10     (or: ./bench/manymodels/run.sh)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/bench/internal/benchserver"
	"github.com/slipway-ml/slipway/client"
)

func main() {
	bin := flag.String("bin", "bin/slipway", "the slipway binary")
	n := flag.Int("n", 300, "in-process deployments")
	process := flag.Int("process", 10, "process deployments (of the first models) for the per-deployment comparison")
	flag.Parse()
	if err := run(*bin, *n, *process); err != nil {
		fmt.Fprintln(os.Stderr, "manymodels:", err)
		os.Exit(1)
	}
}

// model is one of tiny_models.py's models.
type model struct {
	Name  string      `json:"name"`
	Input [][]float32 `json:"input"`
	file  string
}

func run(bin string, n, process int) error {
	dir, err := os.MkdirTemp("", "slipway-manymodels")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	models, err := generate(filepath.Join(dir, "models"), n)
	if err != nil {
		return err
	}
	srv, url, err := benchserver.Start(bin, filepath.Join(dir, "data"))
	if err != nil {
		return err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }() // the server stops its replicas
	tok, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	c := client.New(url, token)
	ctx := context.Background()
	began := time.Now()
	for _, m := range models {
		if err := push(ctx, c, m); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "pushed %d models in %s\n", n, time.Since(began).Round(time.Second))
	inproc, lazy := slipway.IsolationInProcess, slipway.LoadLazy
	for _, m := range models {
		if err := deploy(ctx, c, slipway.DeploymentSpec{Name: m.Name, Model: m.Name, Load: &lazy, Isolation: &inproc}); err != nil {
			return err
		}
	}
	idle, err := rss(srv.Process.Pid)
	if err != nil {
		return err
	}
	if _, err := predict(url, token, models[0].Name, models[0]); err != nil {
		return err
	}
	one, err := rss(srv.Process.Pid)
	if err != nil {
		return err
	}
	var firstAnswers []time.Duration
	for _, m := range models[1:] {
		d, err := predict(url, token, m.Name, m)
		if err != nil {
			return err
		}
		firstAnswers = append(firstAnswers, d)
	}
	all, err := rss(srv.Process.Pid)
	if err != nil {
		return err
	}
	var warm []time.Duration
	for _, m := range models {
		d, err := predict(url, token, m.Name, m)
		if err != nil {
			return err
		}
		warm = append(warm, d)
	}

	// The same models as process replicas, eager: each its own process.
	var procRSS, procPSS int64
	var coldIn, procCold []time.Duration
	for _, m := range models[:process] {
		name := m.Name + "-proc"
		if err := deploy(ctx, c, slipway.DeploymentSpec{Name: name, Model: m.Name}); err != nil {
			return err
		}
		d, err := c.GetDeployment(ctx, name)
		if err != nil || len(d.ReplicaStatus) != 1 || d.ReplicaStatus[0].PID <= 0 {
			return fmt.Errorf("%s: %+v %v", name, d, err)
		}
		if _, err := predict(url, token, name, m); err != nil {
			return err
		}
		pid := d.ReplicaStatus[0].PID
		r, err := rss(pid)
		if err != nil {
			return err
		}
		p, err := pss(pid)
		if err != nil {
			return err
		}
		procRSS, procPSS = procRSS+r, procPSS+p
	}
	// Cold starts from zero of one small model, both ways: the request starts the replica.
	zero := 0
	scale := &slipway.Autoscaling{MinReplicas: 0, MaxReplicas: 1, TargetInFlight: 1, ScaleDownAfterS: 1}
	for _, iso := range []string{slipway.IsolationInProcess, slipway.IsolationProcess} {
		name := "cold-" + iso
		if err := deploy(ctx, c, slipway.DeploymentSpec{Name: name, Model: models[0].Name, Replicas: &zero, Autoscaling: scale, Isolation: &iso}); err != nil {
			return err
		}
		for range 5 {
			if err := waitScaledToZero(ctx, c, name); err != nil {
				return err
			}
			d, err := predict(url, token, name, models[0])
			if err != nil {
				return err
			}
			if iso == slipway.IsolationInProcess {
				coldIn = append(coldIn, d)
			} else {
				procCold = append(procCold, d)
			}
		}
	}
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Printf("| figure | value |\n|---|---|\n")
	fmt.Printf("| server RSS, %d lazy in-process deployments, none loaded | %s |\n", n, mib(idle))
	fmt.Printf("| server RSS, one loaded (ONNX Runtime initialised) | %s |\n", mib(one))
	fmt.Printf("| server RSS, all %d loaded and idle | %s |\n", n, mib(all))
	fmt.Printf("| idle memory per in-process deployment (RSS growth over %d loads / %d) | %.0f KiB |\n", n-1, n-1, float64(all-one)/float64(n-1)/1024)
	fmt.Printf("| idle memory per process deployment (replica RSS, mean of %d) | %s |\n", process, mib(procRSS/int64(process)))
	fmt.Printf("| idle memory per process deployment (replica PSS, mean of %d) | %s |\n", process, mib(procPSS/int64(process)))
	fmt.Printf("| first answer of a lazy in-process deployment (load + predict), median of %d | %s |\n", len(firstAnswers), ms(median(firstAnswers)))
	fmt.Printf("| warm answer, median of %d | %s |\n", len(warm), ms(median(warm)))
	fmt.Printf("| cold start from zero, in-process, median of %d | %s |\n", len(coldIn), ms(median(coldIn)))
	fmt.Printf("| cold start from zero, process, median of %d | %s |\n", len(procCold), ms(median(procCold)))
	fmt.Printf("| cold start in-process / process | %.2f× |\n", float64(median(coldIn))/float64(median(procCold)))
	return nil
}

// generate writes n models with tiny_models.py (next to this file).
func generate(dir string, n int) ([]model, error) {
	script := filepath.Join("bench", "manymodels", "tiny_models.py")
	if out, err := exec.Command("/usr/bin/python3", script, dir, strconv.Itoa(n)).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", script, err, out)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		return nil, err
	}
	var models []model
	if err := json.Unmarshal(raw, &models); err != nil {
		return nil, err
	}
	for i := range models {
		models[i].file = filepath.Join(dir, models[i].Name, "model.onnx")
	}
	return models, nil
}

func push(ctx context.Context, c *client.Client, m model) error {
	body, err := os.ReadFile(m.file)
	if err != nil {
		return err
	}
	v, err := c.PushVersion(ctx, m.Name, bytes.NewReader(body), "model.onnx", &slipway.VersionMetadata{Runtime: slipway.RuntimeONNX}, nil, int64(len(body)))
	if err != nil {
		return fmt.Errorf("push %s: %w", m.Name, err)
	}
	if v.State != slipway.VersionReady {
		return fmt.Errorf("push %s: %s %+v", m.Name, v.State, v.Checks)
	}
	return nil
}

// deploy creates a deployment and waits until it is ACTIVE.
func deploy(ctx context.Context, c *client.Client, spec slipway.DeploymentSpec) error {
	if _, err := c.CreateDeployment(ctx, spec); err != nil {
		return fmt.Errorf("deploy %s: %w", spec.Name, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := c.GetDeployment(ctx, spec.Name)
		if err != nil {
			return err
		}
		switch d.State {
		case slipway.DeploymentActive:
			return nil
		case slipway.DeploymentFailed:
			return fmt.Errorf("deploy %s: FAILED: %s", spec.Name, d.Reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("deploy %s: not ACTIVE after 2 minutes", spec.Name)
}

// predict times one V2 request with m's input row, from its send to the end of its answer.
func predict(url, token, name string, m model) (time.Duration, error) {
	body, err := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": "x", "shape": []int{1, len(m.Input[0])}, "datatype": "FP32", "data": m.Input[0]}}})
	if err != nil {
		return 0, err
	}
	return benchserver.TimePost(url, token, "/v2/models/"+name+"/infer", name, body)
}

func waitScaledToZero(ctx context.Context, c *client.Client, name string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		d, err := c.GetDeployment(ctx, name)
		if err != nil {
			return err
		}
		if d.ScaledToZero && len(d.ReplicaStatus) == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not scale to zero", name)
}

// rss and pss read a process's resident set and its proportional share (shared pages split between sharers).
func rss(pid int) (int64, error) { return procKB(pid, "status", "VmRSS") }
func pss(pid int) (int64, error) { return procKB(pid, "smaps_rollup", "Pss") }

func procKB(pid int, file, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no %s in /proc/%d/%s", field, pid, file)
	}
	kb, err := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10, err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
