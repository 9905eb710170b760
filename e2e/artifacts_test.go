package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

// An installation moves its artifacts into an S3-compatible bucket, serves and downloads models from there,
// collects its garbage there, and keeps a second installation off its prefix.
func TestArtifactStoreInABucket(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	bucket := slipwaytest.StartS3(t, "slipway")
	store := "s3://slipway/prod?endpoint=" + bucket.URL
	dir := t.TempDir()

	// Models registered while the artifacts were on local disk...
	s := startServer(t, dir)
	pushExamples(t, s)
	s.Stop()
	local := localBlobs(t, dir)
	if len(local) == 0 {
		t.Fatal("no local blobs after pushing the examples")
	}
	os.RemoveAll(filepath.Join(dir, "work", "models")) // the unpacked copies: deploys must read the bucket

	// ...are moved into the bucket at the first start with --artifact-store.
	s = startServer(t, dir, "--artifact-store", store)
	if !strings.Contains(s.Log(), "moved local artifacts to the artifact store") {
		t.Fatalf("no move logged:\n%s", s.Log())
	}
	if left := localBlobs(t, dir); len(left) != 0 {
		t.Fatalf("%d blobs left on local disk", len(left))
	}
	if keys := bucket.Keys(t, "slipway", "prod/sha256/"); len(keys) != len(local) {
		t.Fatalf("bucket holds %d blobs, want the %d moved: %v", len(keys), len(local), keys)
	}

	deploy(t, s, "churn", "--model", "churn@champion")
	resp, body := invokeChurn(t, s, "churn", 3)
	if resp.StatusCode != 200 {
		t.Fatalf("predict from a model materialised from the bucket: %d %s", resp.StatusCode, body)
	}

	// A new version is stored in the bucket only, and downloads verified from it.
	if out, errOut, code := s.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx-2",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push: %s %s", out, errOut)
	}
	if left := localBlobs(t, dir); len(left) != 0 {
		t.Fatalf("a push wrote %d blobs to local disk", len(left))
	}
	rc, err := s.Client().DownloadArtifact(context.Background(), "churn", "1")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n == 0 {
		t.Fatalf("download from the bucket: %d bytes, %v", n, err)
	}

	// The prefix belongs to this installation: another one is refused at startup, with the way out.
	out, err := startFailing(t, "--data-dir", t.TempDir(), "--artifact-store", store)
	if err == nil || !strings.Contains(out, "belongs to another Slipway installation") || !strings.Contains(out, "use another prefix") {
		t.Fatalf("a second installation on the same prefix: %v\n%s", err, out)
	}

	// Deleted models' blobs are collected from the bucket at the next start.
	onnxDigest := sha256File(t, examplePath("onnx-churn", "model.onnx"))
	onnxKey := "prod/sha256/" + onnxDigest[:2] + "/" + onnxDigest[2:]
	if !slices.Contains(bucket.Keys(t, "slipway", "prod/sha256/"), onnxKey) {
		t.Fatalf("the ONNX model is not in the bucket as %s", onnxKey)
	}
	for _, m := range []string{"churn-onnx", "churn-onnx-2"} {
		if resp, body := s.do(t, "DELETE", "/api/v1/models/"+m, s.Token, nil, ""); resp.StatusCode != 204 {
			t.Fatalf("delete %s: %d %s", m, resp.StatusCode, body)
		}
	}
	s.Stop()
	s = startServer(t, dir, "--artifact-store", store)
	if slices.Contains(bucket.Keys(t, "slipway", "prod/sha256/"), onnxKey) {
		t.Fatalf("the deleted ONNX model's blob is still in the bucket:\n%s", s.Log())
	}
	deploy(t, s, "churn2", "--model", "churn@champion") // what is referenced stays
}

// The S3 server checks signatures: a server started with the right key but the wrong secret is refused by the
// store, and stops at once with a message that names the store and the credentials to check.
func TestArtifactStoreWrongSecret(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	bucket := slipwaytest.StartS3(t, "slipway")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	out, err := startFailing(t, "--data-dir", t.TempDir(), "--artifact-store", "s3://slipway/prod?endpoint="+bucket.URL)
	if err == nil || bucket.Denied.Load() == 0 {
		t.Fatalf("a server with the wrong secret started (denied %d): %v\n%s", bucket.Denied.Load(), err, out)
	}
	for _, want := range []string{"s3://slipway/prod/", "refused the credentials", "AWS_SECRET_ACCESS_KEY"} {
		if !strings.Contains(out, want) {
			t.Errorf("the server's error does not mention %q:\n%s", want, out)
		}
	}
}

func localBlobs(t *testing.T, dataDir string) []string {
	t.Helper()
	found, err := filepath.Glob(filepath.Join(dataDir, "blobs", "sha256", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// startFailing runs `slipway server` with args and returns its output once it exits (it must, within a minute).
func startFailing(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"server", "--addr", "127.0.0.1:0"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
