package slipway

import (
	"context"
	"time"
)

// CapturePage asks for one page of a deployment's captures with from <= time < to, oldest first, after a
// cursor (the last capture of the previous page; zero: from the start).
type CapturePage struct {
	Deployment string
	From, To   time.Time
	Version    int // 0: every version
	AfterTime  time.Time
	AfterID    int64
	Limit      int
}

// LabelledCapture is a capture with the ground truth received for its rows (none: empty).
type LabelledCapture struct {
	Capture  *Capture
	Feedback []*Feedback
}

// CaptureExportStore reads captures back page by page, so that an export of any length holds one page.
type CaptureExportStore interface {
	PageCaptures(ctx context.Context, p CapturePage) ([]LabelledCapture, error)
}
