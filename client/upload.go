package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
)

// Streamed multipart uploads: the artifact is read while the request is sent, never buffered whole in memory.

// multipartUpload is the body of an upload: a part named partName of partType (left out when partName is
// empty), then the artifact as a file (left out when nil), whose bytes sent are reported to progress.
type multipartUpload struct {
	partName, partType string
	part               []byte
	artifact           io.Reader
	filename           string // the artifact's; "artifact" when empty
	progress           func(sent, total int64)
	total              int64
	baseline           *BaselineFile // sent after the artifact (nil: none)
}

func (u multipartUpload) write(mw *multipart.Writer) error {
	if u.partName != "" {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q`, u.partName))
		h.Set("Content-Type", u.partType)
		w, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := w.Write(u.part); err != nil {
			return err
		}
	}
	if u.artifact != nil {
		filename := u.filename
		if filename == "" {
			filename = "artifact"
		}
		w, err := mw.CreateFormFile("artifact", filename)
		if err != nil {
			return err
		}
		if _, err := io.Copy(&progressWriter{w: w, total: u.total, fn: u.progress}, artifactReader{u.artifact}); err != nil {
			return err
		}
	}
	if b := u.baseline; b != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="baseline"; filename=%q`, b.Name))
		h.Set("Content-Type", b.ContentType)
		w, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, artifactReader{b.Body}); err != nil {
			return err
		}
	}
	return mw.Close()
}

// postMultipart streams u as a multipart POST to path and decodes the answer into out. what names the
// operation in the error of an artifact that could not be read ("push churn"; "" for none).
func (c *Client) postMultipart(ctx context.Context, path, what string, u multipartUpload, out any) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan error, 1)
	go func() { // ends when the body is written or the request ended (pr closed below)
		err := u.write(mw)
		pw.CloseWithError(err) // nil ends the body with EOF
		done <- err
	}()
	resp, err := c.request(ctx, http.MethodPost, path, nil, pr, mw.FormDataContentType(), "")
	// The request is over: unblock the writer if the server stopped reading early, then wait for it so that
	// the artifact is no longer read once we return.
	pr.CloseWithError(errUploadEnded)
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
	}
	var rerr *artifactError
	if errors.As(werr, &rerr) {
		if resp != nil {
			_ = resp.Body.Close() // the artifact's error is the one to report
		}
		if what != "" {
			return fmt.Errorf("client: %s: read artifact: %w", what, rerr.err)
		}
		return fmt.Errorf("client: read artifact: %w", rerr.err)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

var errUploadEnded = errors.New("client: upload request ended")

// artifactError marks a failure to read the caller's artifact (as opposed to a failure to send it).
type artifactError struct{ err error }

func (e *artifactError) Error() string { return e.err.Error() }

type artifactReader struct{ r io.Reader }

func (a artifactReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		err = &artifactError{err}
	}
	return n, err
}

// progressWriter reports the bytes written through it.
type progressWriter struct {
	w     io.Writer
	sent  int64
	total int64
	fn    func(sent, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.sent += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(p.sent, p.total)
	}
	return n, err
}
