package app

import (
	"context"
	"io"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/batch"
	"github.com/slipway-ml/slipway/internal/jobs"
)

// pipelineBatch lets the pipelines' `batch` step start and follow batch predictions. Like batchTarget, it
// lives in the composition root so that neither jobs nor batch imports the other: jobs sees only its
// BatchRunner interface.
type pipelineBatch struct{ svc *batch.Service }

var (
	_ jobs.BatchRunner  = pipelineBatch{}
	_ jobs.HeldOutFiles = pipelineBatch{}
)

func (p pipelineBatch) Create(ctx context.Context, spec slipway.BatchSpec, by string) (*slipway.BatchRun, error) {
	return p.svc.Create(ctx, spec, by)
}

func (p pipelineBatch) Get(ctx context.Context, id string) (*slipway.BatchRun, error) {
	return p.svc.Get(ctx, id)
}

func (p pipelineBatch) List(ctx context.Context, f slipway.BatchFilter) ([]*slipway.BatchRun, int, error) {
	return p.svc.List(ctx, f)
}

func (p pipelineBatch) Cancel(ctx context.Context, id, by string) (*slipway.BatchRun, error) {
	return p.svc.Cancel(ctx, id, by)
}

func (p pipelineBatch) OpenOutput(ctx context.Context, id string) (io.ReadCloser, error) {
	d, err := p.svc.OpenOutput(ctx, id)
	if err != nil {
		return nil, err
	}
	return d.Content, nil
}

func (p pipelineBatch) SaveFile(ctx context.Context, name string, r io.Reader, by string) (*slipway.UploadedFile, error) {
	return p.svc.SaveFile(ctx, name, r, by)
}

func (p pipelineBatch) DeleteFile(ctx context.Context, id string) error {
	return p.svc.DeleteFile(ctx, id)
}
