package blob

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/slipway-ml/slipway/internal/certpool"
)

// S3 stores blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2, ...), under
// PREFIX/sha256/ab/cdef..., so that a server's disk holds no artifact that matters. S3's PUT is atomic (an
// object is visible whole or not at all), which is what Local gets from temp file + rename.
//
// Garbage collection deletes every blob that its installation's database does not reference, so one prefix
// must belong to one installation: OpenS3 claims the prefix with a marker object (PREFIX/slipway-store.json)
// naming the installation, and refuses a prefix another installation claimed.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	tmp    string
	where  string // s3://bucket/prefix, for messages
}

var _ Store = (*S3)(nil)

// S3Config says where the bucket is and who uses it.
type S3Config struct {
	// URL is s3://BUCKET[/PREFIX][?endpoint=http://host:port&region=REGION]; the URL's endpoint and region win
	// over Endpoint and Region. Credentials come from where every AWS client looks (the one exception to
	// "only config reads the environment": the SDK's chain): AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
	// ~/.aws/credentials, or the instance's IAM role.
	URL string
	// Endpoint is the S3 service's URL (http://host:port or https://host); empty for AWS S3.
	Endpoint string
	// Region is the bucket's region; empty lets AWS S3 say, and means us-east-1 for other services.
	Region string
	// CABundle is a PEM file of certificate authorities to trust besides the system's (a self-hosted store
	// with a private CA; AWS_CA_BUNDLE).
	CABundle string
	// TempDir is local scratch space for spooling uploads (the caller empties it at startup).
	TempDir string
	// Installation identifies the database whose references keep these blobs alive.
	Installation string
}

const markerName = "slipway-store.json"

// marker is the object that claims a prefix for one installation.
type marker struct {
	Installation string    `json:"installation"`
	CreatedAt    time.Time `json:"created_at"`
}

// OpenS3 connects to the bucket, checks that it exists and claims the prefix for cfg.Installation.
func OpenS3(ctx context.Context, cfg S3Config) (*S3, error) {
	loc, err := parseS3URL(cfg)
	if err != nil {
		return nil, err
	}
	opts := &minio.Options{
		Creds:  credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{}}),
		Secure: loc.endpoint.Scheme == "https", Region: loc.region, BucketLookup: loc.lookup,
		MaxRetries: 3, // a server that is down should say so at startup, not after ten backoffs
	}
	if cfg.CABundle != "" {
		if opts.Transport, err = transportTrusting(cfg.CABundle); err != nil {
			return nil, fmt.Errorf("blob: artifact store %s: %w", cfg.URL, err)
		}
	}
	client, err := minio.New(loc.endpoint.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("blob: artifact store %s: %w", cfg.URL, err)
	}
	s := &S3{client: client, bucket: loc.bucket, prefix: loc.prefix, tmp: cfg.TempDir,
		where: "s3://" + loc.bucket + "/" + loc.prefix}
	ok, err := client.BucketExists(ctx, s.bucket)
	if err == nil && !ok {
		// A HEAD answer has no body, so any 404 reads as a missing bucket, and some stores answer an unknown
		// key with 404 (versitygw: XAdminUserNotFound). A listing's answer names the error.
		err = s.probeList(ctx)
	}
	if err != nil && refusedCredentials(err) {
		return nil, fmt.Errorf("blob: artifact store %s at %s refused the credentials (%w): check AWS_ACCESS_KEY_ID and "+
			"AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials, the instance role) and that they may read and write bucket %q",
			s.where, loc.endpoint.Redacted(), err, s.bucket)
	}
	if err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchBucket {
		return nil, fmt.Errorf("blob: artifact store %s at %s: %w", s.where, loc.endpoint.Redacted(), err)
	}
	if !ok {
		return nil, fmt.Errorf("blob: artifact store %s: bucket %q does not exist at %s; create it first (for example `aws s3 mb s3://%s`)",
			s.where, s.bucket, loc.endpoint.Redacted(), s.bucket)
	}
	if err := s.claim(ctx, cfg.Installation); err != nil {
		return nil, err
	}
	return s, nil
}

// probeList lists at most one key of the bucket and returns the store's error, if any.
func (s *S3) probeList(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // one answer is enough: stop the listing
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{MaxKeys: 1}) {
		return o.Err
	}
	return nil
}

// refusedCredentials says whether the store refused a request for its key or signature: 403 (a wrong secret
// is a signature that does not match), or an error code naming the key.
func refusedCredentials(err error) bool {
	e := minio.ToErrorResponse(err)
	switch e.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "XAdminUserNotFound":
		return true
	}
	return e.StatusCode == http.StatusForbidden
}

// transportTrusting is minio-go's transport with the CAs of a PEM file added to the system's.
func transportTrusting(caFile string) (*http.Transport, error) {
	pool, err := certpool.WithPEMFile(caFile)
	if err != nil {
		return nil, err
	}
	tr, err := minio.DefaultTransport(true)
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig.RootCAs = pool
	return tr, nil
}

type s3Location struct {
	bucket, prefix, region string
	endpoint               *url.URL
	lookup                 minio.BucketLookupType
}

func parseS3URL(cfg S3Config) (s3Location, error) {
	raw := cfg.URL
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return s3Location{}, fmt.Errorf("blob: artifact store %q: want s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION]", raw)
	}
	loc := s3Location{bucket: u.Host, prefix: strings.Trim(u.Path, "/"), region: cmp.Or(u.Query().Get("region"), cfg.Region)}
	if loc.prefix != "" {
		loc.prefix += "/"
	}
	endpoint := cmp.Or(u.Query().Get("endpoint"), cfg.Endpoint)
	if endpoint == "" {
		loc.endpoint, loc.lookup = &url.URL{Scheme: "https", Host: "s3.amazonaws.com"}, minio.BucketLookupAuto
		return loc, nil
	}
	// Self-hosted stores (MinIO, Ceph, ...) are addressed by path: their buckets have no DNS names.
	loc.lookup = minio.BucketLookupPath
	loc.endpoint, err = url.Parse(endpoint)
	if err != nil || (loc.endpoint.Scheme != "http" && loc.endpoint.Scheme != "https") || loc.endpoint.Host == "" {
		return s3Location{}, fmt.Errorf("blob: artifact store %q: endpoint %q: want http://HOST:PORT or https://HOST", raw, endpoint)
	}
	if loc.region == "" {
		loc.region = "us-east-1" // what self-hosted stores answer to; AWS itself is asked instead
	}
	return loc, nil
}

// claim records the installation in the prefix's marker, or refuses a prefix another installation claimed.
func (s *S3) claim(ctx context.Context, installation string) error {
	key := s.prefix + markerName
	m, err := s.readMarker(ctx, key)
	switch {
	case err != nil:
		return fmt.Errorf("blob: artifact store %s: read %s: %w", s.where, key, err)
	case m != nil && m.Installation != installation:
		return fmt.Errorf("blob: artifact store %s belongs to another Slipway installation (%s, since %s): two installations "+
			"cannot share a prefix, since each deletes the blobs its own database does not reference; use another prefix, "+
			"for example s3://%s/%s", s.where, m.Installation, m.CreatedAt.Format(time.RFC3339), s.bucket, s.prefix+"other")
	case m != nil:
		return nil
	}
	body, _ := json.Marshal(marker{Installation: installation, CreatedAt: time.Now().UTC()})
	_, err = s.client.PutObject(ctx, s.bucket, key, strings.NewReader(string(body)), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/json"})
	if err != nil {
		return fmt.Errorf("blob: artifact store %s: write %s: %w", s.where, key, err)
	}
	return nil
}

// readMarker returns the prefix's marker, or nil when there is none yet.
func (s *S3) readMarker(ctx context.Context, key string) (*marker, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err == nil {
		defer obj.Close()
		var m marker
		if err = json.NewDecoder(io.LimitReader(obj, 1<<16)).Decode(&m); err == nil {
			return &m, nil
		}
	}
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey { // GetObject is lazy: a missing object shows on the read
		return nil, nil
	}
	return nil, err
}

// Where names the store in logs: s3://bucket/prefix/.
func (s *S3) Where() string { return s.where }

// TempDir returns the local scratch directory.
func (s *S3) TempDir() string { return s.tmp }

func (s *S3) key(digest string) (string, error) {
	if err := checkDigest(digest); err != nil {
		return "", err
	}
	return s.prefix + RelPath(digest), nil
}

// Put spools r to local scratch space while hashing it (the key is the digest, known only at the end), then
// uploads it unless the bucket already has it.
func (s *S3) Put(ctx context.Context, r io.Reader) (digest string, size int64, err error) {
	f, digest, size, err := spool(ctx, s.tmp, r)
	if err != nil {
		return "", 0, err
	}
	defer discardTemp(f) // uploaded or not, the spooled copy is done with
	return digest, size, s.upload(ctx, f, digest, size)
}

// PutFile hashes the file, then uploads it unless the bucket already has it.
func (s *S3) PutFile(ctx context.Context, path string) (digest string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("blob: put file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if size, err = io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", 0, fmt.Errorf("blob: put file %s: %w", path, err)
	}
	digest = hex.EncodeToString(h.Sum(nil))
	return digest, size, s.upload(ctx, f, digest, size)
}

// upload sends f (hashed already) as digest. A blob present with the same size is kept (dedupe); one with
// another size is damaged and replaced.
func (s *S3) upload(ctx context.Context, f *os.File, digest string, size int64) error {
	if have, err := s.Stat(ctx, digest); err == nil && have == size {
		return nil
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("blob: put %s: %w", digest, err)
	}
	key, _ := s.key(digest) // our own hash
	// minio-go signs an empty body as a stream without a Content-Length, which S3 refuses; an empty payload
	// has nothing to protect anyway.
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: size == 0}
	// The file itself, not a wrapper: minio-go uploads a large one in parts read in parallel with ReadAt,
	// instead of buffering each part in memory. The request's context stops it.
	_, err := s.client.PutObject(ctx, s.bucket, key, f, size, opts)
	if err != nil {
		return s.fail("put", digest, err)
	}
	return nil
}

// Open returns the blob's content, verified against its digest as it is read (see Local.Open).
func (s *S3) Open(ctx context.Context, digest string) (io.ReadCloser, error) {
	key, err := s.key(digest)
	if err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat() // GetObject is lazy: this sends the request, so a missing blob is reported here
	}
	if err != nil {
		if obj != nil {
			_ = obj.Close() // nothing was read: closing only releases the request
		}
		return nil, s.fail("open", digest, err)
	}
	return newVerifier(ctx, obj, digest), nil
}

// Stat returns the blob's size.
func (s *S3) Stat(ctx context.Context, digest string) (int64, error) {
	key, err := s.key(digest)
	if err != nil {
		return 0, err
	}
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return 0, s.fail("stat", digest, err)
	}
	return info.Size, nil
}

// Delete removes the blob; a missing blob is ErrNotFound (S3 itself does not say).
func (s *S3) Delete(ctx context.Context, digest string) error {
	if _, err := s.Stat(ctx, digest); err != nil {
		return err
	}
	key, _ := s.key(digest)
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.fail("delete", digest, err)
	}
	return nil
}

// Walk calls fn for every blob under the prefix, in digest order (S3 lists keys in order). Other objects
// are ignored.
func (s *S3) Walk(ctx context.Context, fn func(digest string, size int64) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing when fn fails
	dir := s.prefix + objectsDir + "/"
	for obj := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("blob: walk %s: %w", s.where, obj.Err)
		}
		fanout, rest, ok := strings.Cut(strings.TrimPrefix(obj.Key, dir), "/")
		digest := fanout + rest
		if !ok || len(fanout) != 2 || !ValidDigest(digest) {
			continue
		}
		if err := fn(digest, obj.Size); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s *S3) fail(op, digest string, err error) error {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey:
		return fmt.Errorf("%w: %s in %s", ErrNotFound, digest, s.where)
	case minio.NoSuchBucket:
		return fmt.Errorf("blob: %s %s: bucket %q of %s is gone: %w", op, digest, s.bucket, s.where, err)
	}
	return fmt.Errorf("blob: %s %s in %s: %w", op, digest, s.where, err)
}

// MoveAll moves every blob of from into to, verifying each on the way, and returns how many it moved. It is
// how an installation switches from a local folder to a bucket: blobs already in to are only deleted from from.
func MoveAll(ctx context.Context, from, to Store) (int, error) {
	var digests []string
	if err := from.Walk(ctx, func(d string, _ int64) error { digests = append(digests, d); return nil }); err != nil {
		return 0, err
	}
	for i, d := range digests {
		if err := moveOne(ctx, from, to, d); err != nil {
			return i, fmt.Errorf("blob: move %s: %w", d, err)
		}
	}
	return len(digests), nil
}

func moveOne(ctx context.Context, from, to Store, digest string) error {
	size, err := from.Stat(ctx, digest)
	if err != nil {
		return err
	}
	if have, err := to.Stat(ctx, digest); err != nil || have != size {
		r, err := from.Open(ctx, digest)
		if err != nil {
			return err
		}
		got, _, err := to.Put(ctx, r) // reading r to its end verifies the digest
		_ = r.Close()                 // a reader's close reports nothing about what was read
		if err != nil {
			return err
		}
		if got != digest {
			return fmt.Errorf("%w: stored as %s", ErrCorrupt, got)
		}
	}
	return from.Delete(ctx, digest)
}
