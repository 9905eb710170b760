// Command coldstart measures a deployment's cold start: from a request to a deployment scaled to zero to its
// answer (the request waits while a replica starts), for the ONNX example (a process replica, and an in-process
// session) and the Python example. Each round waits until the deployment has scaled to zero, times one request, then times one warm
// request on the replica it started, and, for Python, the bare floor of a start: a python3 that imports the
// model's libraries and unpickles it (the baselines of the same run).
//
//	go run ./bench/coldstart -bin bin/slipway -rounds 10     (or: ./bench/coldstart/run.sh)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/slipway-ml/slipway/bench/internal/benchserver"
	"github.com/slipway-ml/slipway/client"
)

func main() {
	bin := flag.String("bin", "bin/slipway", "the slipway binary")
	examples := flag.String("examples", "examples", "the examples folder (after make examples)")
	rounds := flag.Int("rounds", 10, "cold starts per runtime")
	pywide := flag.String("pywide", "", "also a numpy-in Python model: a directory written by bench/pywide/make_model.py")
	only := flag.String("only", "", "measure only the runtimes whose deployment name contains this (cold-python, cold-onnx, cold-pywide)")
	flag.Parse()
	if err := run(*bin, *examples, *pywide, *only, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		os.Exit(1)
	}
}

// target is one deployment to measure.
type target struct {
	name, runtime string
	push, deploy  []string
	body          string
	floor         []string // a command doing the least a replica must do before it answers (nil: none)
}

func run(bin, examples, pywide, only string, rounds int) error {
	dir, err := os.MkdirTemp("", "slipway-coldstart")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	srv, url, err := benchserver.Start(bin, dir)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Process.Signal(os.Interrupt); _ = srv.Wait() }() // the server stops its replicas
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	scale := []string{"--replicas", "0", "--min-replicas", "0", "--max-replicas", "1", "--scale-down-after", "1s", "--target-in-flight", "1"}
	targets := []target{
		{name: "cold-onnx", runtime: "ONNX (process replica)",
			push:   []string{"models", "push", filepath.Join(examples, "onnx-churn", "model.onnx"), "--model", "churn-onnx", "--metadata", filepath.Join(examples, "onnx-churn", "metadata.json")},
			deploy: append([]string{"deploy", "cold-onnx", "--model", "churn-onnx:1"}, scale...),
			body:   `{"inputs": [[31.0, 29.0, 36.09, 0.0]]}`},
		{name: "cold-onnx-inproc", runtime: "ONNX (in-process session)",
			deploy: append([]string{"deploy", "cold-onnx-inproc", "--model", "churn-onnx:1", "--isolation", "in-process"}, scale...),
			body:   `{"inputs": [[31.0, 29.0, 36.09, 0.0]]}`},
		{name: "cold-python", runtime: "Python (scikit-learn pipeline)",
			push:   []string{"models", "push", filepath.Join(examples, "sklearn-churn"), "--model", "churn", "--metadata", filepath.Join(examples, "sklearn-churn", "metadata.json")},
			deploy: append([]string{"deploy", "cold-python", "--model", "churn:1"}, scale...),
			body:   `{"dataframe_split": {"columns": ["age", "tenure_months", "monthly_charges", "plan", "support_calls"], "data": [[31.0, 29.0, 36.09, "pro", 0.0]]}}`,
			floor: []string{"/usr/bin/python3", "-c", fmt.Sprintf("import pickle, numpy, pandas, sklearn; pickle.load(open(%q, 'rb'))",
				filepath.Join(examples, "sklearn-churn", "model.pkl"))}},
	}
	if pywide != "" { // scikit-learn without pandas: the harness then never imports it (docs/deployments.md)
		targets = append(targets, target{name: "cold-pywide", runtime: "Python (numpy in, bench/pywide)",
			push:   []string{"models", "push", pywide, "--model", "pywide", "--metadata", filepath.Join(pywide, "metadata.json")},
			deploy: append([]string{"deploy", "cold-pywide", "--model", "pywide:1"}, scale...),
			body:   string(mustRead(filepath.Join(pywide, "frame-1.json"))),
			floor: []string{"/usr/bin/python3", "-c", fmt.Sprintf("import pickle, numpy; pickle.load(open(%q, 'rb'))",
				filepath.Join(pywide, "model.pkl"))}})
	}
	targets = slices.DeleteFunc(targets, func(tg target) bool {
		if only == "" || strings.Contains(tg.name, only) {
			return false
		}
		return tg.name != "cold-onnx" || !strings.Contains("cold-onnx-inproc", only) // cold-onnx-inproc reuses cold-onnx's model
	})
	c := client.New(url, token)
	fmt.Printf("| runtime | cold starts | cold: median | min | max | warm request: median | bare start: median | cold / bare start |\n|---|---|---|---|---|---|---|---|\n")
	for _, tg := range targets {
		for _, args := range [][]string{tg.push, tg.deploy} {
			if args == nil { // the model is already pushed
				continue
			}
			if out, err := cli(bin, url, token, args...); err != nil {
				return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
			}
		}
		var cold, warm, floor []time.Duration
		for range rounds {
			if err := waitScaledToZero(c, tg.name); err != nil {
				return err
			}
			d, err := timeRequest(url, token, tg.name, tg.body)
			if err != nil {
				return err
			}
			cold = append(cold, d)
			if d, err = timeRequest(url, token, tg.name, tg.body); err != nil {
				return err
			}
			warm = append(warm, d)
			if tg.floor != nil {
				start := time.Now()
				if out, err := exec.Command(tg.floor[0], tg.floor[1:]...).CombinedOutput(); err != nil {
					return fmt.Errorf("%v: %w\n%s", tg.floor, err, out)
				}
				floor = append(floor, time.Since(start))
			}
		}
		slices.Sort(cold)
		slices.Sort(warm)
		bare, ratio := "–", "–"
		if len(floor) > 0 {
			slices.Sort(floor)
			bare, ratio = ms(median(floor)), fmt.Sprintf("%.2f×", float64(median(cold))/float64(median(floor)))
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s |\n", tg.runtime, rounds, ms(median(cold)), ms(cold[0]), ms(cold[len(cold)-1]),
			ms(median(warm)), bare, ratio)
	}
	return nil
}

func cli(bin, url, token string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SLIPWAY_URL="+url, "SLIPWAY_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func waitScaledToZero(c *client.Client, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		d, err := c.GetDeployment(ctx, name)
		if err != nil {
			return err
		}
		if d.ScaledToZero && len(d.ReplicaStatus) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not scale to zero", name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// timeRequest times one prediction from its send to the end of its answer.
func timeRequest(url, token, name, body string) (time.Duration, error) {
	return benchserver.TimePost(url, token, "/deployments/"+name+"/invocations", name, []byte(body))
}

func mustRead(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		os.Exit(1)
	}
	return b
}

func median(ds []time.Duration) time.Duration { return ds[len(ds)/2] }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
