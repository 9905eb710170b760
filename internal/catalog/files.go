package catalog

import (
	"context"
	"fmt"
	"io"

	"github.com/slipway-ml/slipway"
)

// OpenFile opens one of a version's files from the blob store, verified against its digest as it is read:
// network replicas download their version's files one by one through it.
func (s *Service) OpenFile(ctx context.Context, f slipway.File) (io.ReadCloser, error) {
	r, err := s.blobs.Open(ctx, f.SHA256)
	if err != nil {
		return nil, fmt.Errorf("catalog: open %s (%s): %w", f.Path, f.SHA256, err)
	}
	return r, nil
}
