package blob

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway/internal/slipwaytest"
)

func openS3(t *testing.T, srv *slipwaytest.S3, url, installation string) *S3 {
	t.Helper()
	s, err := OpenS3(context.Background(), S3Config{URL: url, Endpoint: srv.URL, TempDir: t.TempDir(), Installation: installation})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStoreContract runs the same expectations against every Store.
func TestStoreContract(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	srv := slipwaytest.StartS3(t, "models")
	stores := map[string]func(t *testing.T) Store{
		"local": func(t *testing.T) Store { s, _ := open(t); return s },
		"s3":    func(t *testing.T) Store { return openS3(t, srv, "s3://models/"+t.Name(), "inst-1") },
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			// 40 MiB: over minio-go's 16 MiB part size, so the bucket gets a multipart upload.
			payloads := [][]byte{{}, []byte("hello"), randomBytes(40 << 20)}
			var digests []string
			for _, p := range payloads {
				d := put(t, s, p)
				got, err := readAll(s, d)
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("read %s: %d bytes, %v; want %d bytes", d, len(got), err, len(p))
				}
				if size, err := s.Stat(ctx, d); err != nil || size != int64(len(p)) {
					t.Fatalf("Stat = %d, %v; want %d", size, err, len(p))
				}
				digests = append(digests, d)
			}
			if name == "s3" && srv.Parts.Load() == 0 {
				t.Fatal("40 MiB went up in one request, not as a multipart upload")
			}
			put(t, s, []byte("hello")) // dedupe: no error, same digest

			path := filepath.Join(t.TempDir(), "file")
			os.WriteFile(path, []byte("from a file"), 0o600)
			if d, n, err := s.PutFile(ctx, path); err != nil || d != sum([]byte("from a file")) || n != 11 {
				t.Fatalf("PutFile = %s, %d, %v", d, n, err)
			}
			digests = append(digests, sum([]byte("from a file")))

			var walked []string
			if err := s.Walk(ctx, func(d string, size int64) error { walked = append(walked, d); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(walked) != len(digests) || !sortedStrings(walked) {
				t.Fatalf("Walk gave %v, want the %d digests in order", walked, len(digests))
			}
			stop := errors.New("stop")
			if err := s.Walk(ctx, func(string, int64) error { return stop }); err != stop {
				t.Fatalf("Walk did not return fn's error unchanged: %v", err)
			}

			missing := sum([]byte("never stored"))
			if _, err := s.Open(ctx, missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
			}
			if _, err := s.Stat(ctx, missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Stat(missing) = %v, want ErrNotFound", err)
			}
			if err := s.Delete(ctx, missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Delete(missing) = %v, want ErrNotFound", err)
			}
			for _, bad := range []string{"", "../../etc/passwd", strings.ToUpper(digests[1]), "sha256:" + digests[1]} {
				if _, err := s.Open(ctx, bad); !errors.Is(err, ErrInvalid) {
					t.Fatalf("Open(%q) = %v, want ErrInvalid", bad, err)
				}
				if err := s.Delete(ctx, bad); !errors.Is(err, ErrInvalid) {
					t.Fatalf("Delete(%q) = %v, want ErrInvalid", bad, err)
				}
			}

			if err := s.Delete(ctx, digests[1]); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Open(ctx, digests[1]); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open after Delete = %v, want ErrNotFound", err)
			}

			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, _, err := s.Put(cctx, bytes.NewReader([]byte("late"))); err == nil {
				t.Fatal("Put with a canceled context succeeded")
			}
			if _, err := s.Stat(ctx, sum([]byte("late"))); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a canceled Put left a blob: %v", err)
			}
			assertTmpEmpty(t, s)
		})
	}
}

func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func TestS3CorruptDetectedOnRead(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	srv := slipwaytest.StartS3(t, "models")
	s := openS3(t, srv, "s3://models/team-a", "inst-1")
	d := put(t, s, []byte("the real content"))
	// Same size, other bytes: only the read's hash can tell.
	damaged := []byte("THE REAL CONTENT")
	srv.PutObject(t, "models", "team-a/sha256/"+d[:2]+"/"+d[2:], damaged)
	if _, err := readAll(s, d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a damaged blob gave %v, want ErrCorrupt", err)
	}
}

func TestS3PrefixBelongsToOneInstallation(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	srv := slipwaytest.StartS3(t, "models")
	a := openS3(t, srv, "s3://models/shared", "inst-a")
	put(t, a, []byte("a's model"))
	openS3(t, srv, "s3://models/shared/", "inst-a") // the same installation again (restart): fine

	_, err := OpenS3(context.Background(), S3Config{URL: "s3://models/shared?endpoint=" + srv.URL, TempDir: t.TempDir(), Installation: "inst-b"})
	if err == nil || !strings.Contains(err.Error(), "belongs to another Slipway installation (inst-a") || !strings.Contains(err.Error(), "use another prefix") {
		t.Fatalf("a second installation on the same prefix: %v", err)
	}
	b := openS3(t, srv, "s3://models/shared-b", "inst-b") // a prefix of its own: fine, and it sees none of a's blobs
	if err := b.Walk(context.Background(), func(d string, _ int64) error { t.Errorf("b walked a's blob %s", d); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestOpenS3Errors(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	srv := slipwaytest.StartS3(t, "models")
	tests := []struct {
		name, url, want string
	}{
		{"not s3", "https://models/x", "want s3://BUCKET"},
		{"no bucket", "s3:///x", "want s3://BUCKET"},
		{"bad endpoint", "s3://models/x?endpoint=ftp://host", "want http://HOST:PORT"},
		{"the URL's endpoint wins", "s3://nope/x?endpoint=http://127.0.0.1:1", "artifact store s3://nope/x/"},
		{"missing bucket", "s3://nope/x?endpoint=" + srv.URL, `bucket "nope" does not exist`},
		{"unreachable", "s3://models/x?endpoint=http://127.0.0.1:1", "artifact store s3://models/x/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenS3(context.Background(), S3Config{URL: tt.url, Endpoint: srv.URL, TempDir: t.TempDir(), Installation: "i"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("OpenS3(%s) = %v, want an error containing %q", tt.url, err, tt.want)
			}
		})
	}
	// The server checks signatures: an unknown key and a known key with the wrong secret are both refused, and
	// the error says which store refused what.
	for _, env := range [][2]string{{"AWS_ACCESS_KEY_ID", "someone-else"}, {"AWS_SECRET_ACCESS_KEY", "not-the-secret"}} {
		t.Run("wrong "+env[0], func(t *testing.T) {
			t.Setenv(env[0], env[1])
			before := srv.Denied.Load()
			_, err := OpenS3(context.Background(), S3Config{URL: "s3://models/x?endpoint=" + srv.URL, TempDir: t.TempDir(), Installation: "i"})
			if err == nil {
				t.Fatal("OpenS3 with credentials the server refuses succeeded")
			}
			// A wrong secret is a signature that does not match: 403. (versitygw answers an unknown key 404.)
			if env[0] == "AWS_SECRET_ACCESS_KEY" && srv.Denied.Load() == before {
				t.Fatalf("the server did not refuse a bad signature with 403: %v", err)
			}
			for _, want := range []string{"s3://models/x/", "refused the credentials", "AWS_SECRET_ACCESS_KEY"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestMoveAll(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	srv := slipwaytest.StartS3(t, "models")
	ctx := context.Background()
	local, _ := open(t)
	s3 := openS3(t, srv, "s3://models/moved", "inst-1")
	var digests []string
	for _, p := range []string{"one", "two", "three"} {
		digests = append(digests, put(t, local, []byte(p)))
	}
	put(t, s3, []byte("two")) // already there: only deleted locally

	n, err := MoveAll(ctx, local, s3)
	if err != nil || n != 3 {
		t.Fatalf("MoveAll = %d, %v; want 3", n, err)
	}
	for i, p := range []string{"one", "two", "three"} {
		if got, err := readAll(s3, digests[i]); err != nil || string(got) != p {
			t.Fatalf("moved blob %s = %q, %v", digests[i], got, err)
		}
		if _, err := local.Stat(ctx, digests[i]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("moved blob still local: %v", err)
		}
	}

	// A damaged local blob is not moved, and not deleted either: it is the only copy there is.
	d := put(t, local, []byte("four"))
	p, _ := local.path(d)
	os.Chmod(p, 0o644)
	os.WriteFile(p, []byte("FOUR"), 0o644)
	if _, err := MoveAll(ctx, local, s3); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("MoveAll of a damaged blob = %v, want ErrCorrupt", err)
	}
	if _, err := s3.Stat(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a damaged blob reached the bucket: %v", err)
	}
	if _, err := local.Stat(ctx, d); err != nil {
		t.Fatalf("a damaged blob was deleted: %v", err)
	}
}

// Over HTTPS, as AWS serves S3: payloads are not signed chunk by chunk, and the endpoint's certificate must be
// trusted, here through a CA bundle (AWS_CA_BUNDLE).
func TestS3OverTLS(t *testing.T) {
	slipwaytest.UseS3Credentials(t)
	srv := slipwaytest.StartS3TLS(t, "models")
	cfg := S3Config{URL: "s3://models/tls", Endpoint: srv.URL, TempDir: t.TempDir(), Installation: "inst-1"}

	if _, err := OpenS3(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an endpoint whose certificate is not trusted: %v", err)
	}
	cfg.CABundle = filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(cfg.CABundle, []byte("not a certificate"), 0o644)
	if _, err := OpenS3(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA bundle without certificates: %v", err)
	}

	cfg.CABundle = srv.CAFile
	s, err := OpenS3(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{[]byte("small"), randomBytes(20 << 20)} {
		d := put(t, s, p)
		if got, err := readAll(s, d); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("read back %d bytes over TLS: %d bytes, %v", len(p), len(got), err)
		}
	}
	if srv.Parts.Load() == 0 {
		t.Fatal("20 MiB went up in one request, not as a multipart upload")
	}
}
