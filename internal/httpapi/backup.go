package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/slipway-ml/slipway"
)

// handleBackup streams an online backup (internal/backup) as a tar. Errors before the first byte are problems
// as usual; after it, the connection is cut, so that the client never takes a truncated stream for a backup
// (the tar has no end marker, and a chunked response no final chunk).
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) error {
	if s.backup == nil {
		return slipway.Errorf(slipway.ENOTFOUND, "this server has no backup")
	}
	withMonitor, err := boolParam(r, "monitor", false)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-tar")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="slipway-backup-%s.tar"`, time.Now().UTC().Format("20060102T150405Z")))
	cw := &countingWriter{w: w}
	if err := s.backup(r.Context(), cw, withMonitor); err != nil {
		if cw.n == 0 {
			h.Del("Content-Disposition")
			return err
		}
		s.log.ErrorContext(r.Context(), "backup cut short", "err", err, "bytes", cw.n)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// boolParam reads an optional true/false query parameter.
func boolParam(r *http.Request, name string, absent bool) (bool, error) {
	switch q := r.URL.Query().Get(name); q {
	case "":
		return absent, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, slipway.Errorf(slipway.EINVALID, "%s must be true or false, got %q", name, q)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
