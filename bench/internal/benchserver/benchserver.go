// Package benchserver starts the slipway binary for the benchmark programs.
package benchserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"time"
)

var listenRE = regexp.MustCompile(`addr=(https?://127\.0\.0\.1:\d+)`)

// Start starts `bin server` on data folder dir at a free loopback port and returns once it listens, with the
// base URL it logged. The caller stops the process.
func Start(bin, dir string) (*exec.Cmd, string, error) {
	cmd := exec.Command(bin, "server", "--data-dir", dir, "--addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() { // ends when the server closes stderr
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, a, nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		return nil, "", fmt.Errorf("the server did not listen within a minute")
	}
}

// TimePost times one JSON prediction POSTed to url+path with token, from its send to the end of its answer;
// an answer other than 200 is an error naming what.
func TimePost(url, token, path, what string, body []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", url+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %d %s %v", what, resp.StatusCode, buf.String(), err)
	}
	return took, nil
}
