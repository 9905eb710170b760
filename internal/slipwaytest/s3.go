package slipwaytest

import (
	"bufio"
	"bytes"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// S3 is an S3-protocol server on 127.0.0.1 (gofakes3 with an in-memory backend): the clients under test
// speak the real protocol over HTTP, with SigV4-signed requests. No real S3 service is reachable from this
// machine, and MinIO's server is AGPL, so this is the closest real thing a test can start.
type S3 struct {
	URL     string         // http://127.0.0.1:PORT
	Backend *s3mem.Backend // direct access, for tests that damage or inspect objects
	Denied  atomic.Int64   // requests refused because they were not signed with AccessKey
	Parts   atomic.Int64   // parts received by multipart uploads
	CAFile  string         // with StartS3TLS: the server certificate, PEM
	server  *httptest.Server
}

// S3AccessKey is the access key the server accepts (with any secret: gofakes3 does not check signatures,
// so the server only checks that requests are signed with this key).
const S3AccessKey = "slipway-test"

// UseS3Credentials puts the test server's key where every AWS client looks first (the environment), for the
// test's duration; the test must not be parallel.
func UseS3Credentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", S3AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-checked")
}

// StartS3 starts the server (plain HTTP) with the given buckets; it stops when the test ends.
func StartS3(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	return startS3(t, false, buckets)
}

// StartS3TLS starts the server on HTTPS, as AWS S3 is served: URL is https://, and CAFile holds the PEM of the
// certificate a client must trust.
func StartS3TLS(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	return startS3(t, true, buckets)
}

func startS3(t testing.TB, useTLS bool, buckets []string) *S3 {
	t.Helper()
	backend := s3mem.New()
	for _, b := range buckets {
		if err := backend.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	s := &S3{Backend: backend}
	fake := gofakes3.New(backend).Server()
	s.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Authorization"), "Credential="+S3AccessKey+"/") {
			s.Denied.Add(1)
			w.WriteHeader(http.StatusForbidden)
			// The status is what the tests check: a body lost to a client that hung up changes nothing.
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>not signed with the test key</Message></Error>`))
			return
		}
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			s.Parts.Add(1)
			if r.Header.Get("X-Amz-Content-Sha256") == streamingPayload {
				decodeChunkedPart(r) // what S3 does and gofakes3 does only for whole objects
			}
		}
		fake.ServeHTTP(w, r)
	}))
	s.server.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests are about
	if useTLS {
		s.server.StartTLS()
		s.CAFile = filepath.Join(t.TempDir(), "ca.pem")
		cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.server.Certificate().Raw})
		if err := os.WriteFile(s.CAFile, cert, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		s.server.Start()
	}
	s.URL = s.server.URL
	t.Cleanup(s.server.Close)
	return s
}

// Keys lists the keys under prefix in bucket.
func (s *S3) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	p := gofakes3.NewPrefix(&prefix, nil)
	list, err := s.Backend.ListBucket(bucket, &p, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range list.Contents {
		keys = append(keys, c.Key)
	}
	return keys
}

const streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

// decodeChunkedPart replaces the body of an UploadPart request signed chunk by chunk (aws-chunked:
// "SIZE;chunk-signature=SIG\r\nDATA\r\n" ..., ending with a chunk of size 0) with the data it carries.
func decodeChunkedPart(r *http.Request) {
	br := bufio.NewReader(r.Body)
	var data bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		sizeHex, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		size, err := strconv.ParseInt(sizeHex, 16, 64)
		if err != nil || size == 0 {
			break
		}
		if _, err := io.CopyN(&data, br, size); err != nil {
			break
		}
		_, _ = br.Discard(2) // the chunk's CRLF; a body cut short ends the loop at the next read
	}
	r.Body = io.NopCloser(&data)
	r.ContentLength = int64(data.Len())
	r.Header.Set("Content-Length", strconv.Itoa(data.Len()))
	r.Header.Del("X-Amz-Content-Sha256")
	r.Header.Del("X-Amz-Decoded-Content-Length")
}
