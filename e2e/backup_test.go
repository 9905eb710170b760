package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// A backup taken while a deployment serves restores into a new data folder: the catalog, the tokens and the
// artifacts (served again) come back. A damaged artifact fails the backup and leaves no file.
func TestBackupAndRestore(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	pushExamples(t, s)
	deploy(t, s, "churn", "--model", "churn@champion")
	out, errOut, code := s.cli("tokens", "create", "reader", "--role", "viewer", "-o", "json")
	if code != 0 {
		t.Fatalf("tokens create: %s %s", out, errOut)
	}
	viewer := strings.Split(strings.Split(out, `"token": "`)[1], `"`)[0]
	if resp, body := s.do(t, "GET", "/api/v1/backup", viewer, nil, ""); resp.StatusCode != 403 {
		t.Fatalf("backup with a viewer token: %d %s", resp.StatusCode, body)
	}
	if resp, body := s.do(t, "GET", "/api/v1/backup?monitor=maybe", s.Token, nil, ""); resp.StatusCode != 400 || !strings.Contains(string(body), "monitor must be true or false") {
		t.Fatalf("backup?monitor=maybe: %d %s", resp.StatusCode, body)
	}

	file := filepath.Join(t.TempDir(), "backup.tar")
	_, errOut, code = s.cli("backup", "--file", file, "--include-monitor")
	if code != 0 || !strings.Contains(errOut, "slipway.db, monitor.db, ") || !strings.Contains(errOut, "artifact blobs") {
		t.Fatalf("backup: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := s.cli("backup", "--file", file); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("a backup over an existing file: exit %d %s", code, errOut)
	}

	restored := t.TempDir()
	untar := exec.Command("tar", "-xf", file, "-C", restored)
	if b, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("tar -xf: %v %s", err, b)
	}
	tok, _ := os.ReadFile(filepath.Join(s.dataDir, "admin.token")) // a secret: kept by its owner, not in the backup
	os.WriteFile(filepath.Join(restored, "admin.token"), tok, 0o600)
	r := startServer(t, restored)
	for _, m := range []string{"churn", "churn-onnx"} {
		v, err := r.Client().GetVersion(context.Background(), m, "1")
		if err != nil || v.State != slipway.VersionReady {
			t.Fatalf("restored %s:1: %+v, %v", m, v, err)
		}
	}
	if resp, _ := r.do(t, "GET", "/api/v1/whoami", viewer, nil, ""); resp.StatusCode != 200 {
		t.Fatalf("a token created before the backup: whoami %d", resp.StatusCode)
	}
	deploy(t, r, "churn-restored", "--model", "churn:1")
	resp, body := invokeChurn(t, r, "churn-restored", 2)
	if resp.StatusCode != 200 {
		t.Fatalf("predict from restored artifacts: %d %s", resp.StatusCode, body)
	}

	// Damage one artifact of the first server: the backup fails, says so, and saves nothing.
	blobs, _ := filepath.Glob(filepath.Join(s.dataDir, "blobs", "sha256", "*", "*"))
	victim := blobs[len(blobs)-1]
	os.Chmod(victim, 0o644)
	b, _ := os.ReadFile(victim)
	b[0] ^= 0xff
	os.WriteFile(victim, b, 0o644)
	bad := filepath.Join(t.TempDir(), "bad.tar")
	if _, errOut, code := s.cli("backup", "--file", bad); code == 0 || !strings.Contains(errOut, "incomplete, nothing saved") {
		t.Fatalf("backup with a damaged artifact: exit %d %s", code, errOut)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a failed backup left %s", bad)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(bad), ".slipway-backup-*")); len(leftovers) != 0 {
		t.Fatalf("a failed backup left %v", leftovers)
	}
}
