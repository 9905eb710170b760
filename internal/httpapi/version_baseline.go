package httpapi

import (
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"path"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/monitor"
)

// baselineUpload is the optional "baseline" part of a registration: a sample of the training data, spooled,
// stored as the new version's baseline once the version is READY (so that drift works from its first
// deployment).
type baselineUpload struct {
	path   string
	format string // monitor.FormatCSV or monitor.FormatParquet
}

// readBaselinePart spools a "baseline" part, its format from its Content-Type or else its file name.
func (s *Server) readBaselinePart(part *multipart.Part, b *baselineUpload) error {
	if b.path != "" {
		return slipway.Errorf(slipway.EINVALID, "more than one \"baseline\" part: send one sample of the training data")
	}
	if s.monitor == nil {
		return slipway.Errorf(slipway.EUNAVAILABLE, "monitoring is not running on this server: register without a baseline")
	}
	mt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
	switch ext := strings.ToLower(path.Ext(part.FileName())); {
	case mt == "text/csv" || mt == "application/csv" || ext == ".csv":
		b.format = monitor.FormatCSV
	case mt == "application/vnd.apache.parquet" || mt == "application/x-parquet" || mt == "application/parquet" || ext == ".parquet":
		b.format = monitor.FormatParquet
	default:
		return slipway.Errorf(slipway.EINVALID, "the \"baseline\" part must be a CSV file (with a header row) or a Parquet file: "+
			"send it as text/csv or application/vnd.apache.parquet, or name it .csv or .parquet (got %q, %q)", mt, part.FileName())
	}
	f, err := os.CreateTemp(s.tempDir, "baseline-*")
	if err != nil {
		return fmt.Errorf("httpapi: spool baseline: %w", err)
	}
	b.path = f.Name()
	n, err := io.Copy(f, io.LimitReader(part, monitor.MaxBaselineBytes+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > monitor.MaxBaselineBytes {
		err = slipway.Errorf(slipway.ETOOLARGE, "baseline larger than %d bytes: send a sample of the training data", monitor.MaxBaselineBytes)
	}
	if err != nil {
		return uploadReadError(err)
	}
	return nil
}

// storeBaseline profiles the spooled sample as v's baseline. A version that failed its checks gets none.
func (s *Server) storeBaseline(ctx context.Context, v *slipway.ModelVersion, b baselineUpload, by string) error {
	if b.path == "" || v.State != slipway.VersionReady {
		return nil
	}
	f, err := os.Open(b.path)
	if err != nil {
		return fmt.Errorf("httpapi: read the spooled baseline: %w", err)
	}
	defer f.Close()
	if _, err := s.monitor.PutBaseline(ctx, v.Model, slipway.VersionRef{Number: v.Version}, b.format, f, by); err != nil {
		return slipway.Wrap(slipway.ErrorCode(err), err, "version %d of %s is registered (READY), but its baseline was refused: %s; "+
			"upload a corrected sample with PUT /api/v1/models/%s/versions/%d/baseline (slipway baseline %s:%d FILE)",
			v.Version, v.Model, slipway.ErrorMessage(err), v.Model, v.Version, v.Model, v.Version)
	}
	return nil
}
