package app

import (
	"context"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/batch"
)

// batchTarget lets a schedule start batch predictions: the schedule carries the BatchSpec ("batch") and its
// target name is a label for listings. It lives here, in the composition root, so that neither jobs nor batch
// imports the other.
type batchTarget struct{ svc *batch.Service }

func (t batchTarget) Validate(ctx context.Context, sch *slipway.Schedule) error {
	if sch.Batch == nil {
		return slipway.Errorf(slipway.EINVALID, "schedule %s targets a batch prediction: give its spec under \"batch\" (the body of POST /api/v1/batch-predictions)", sch.Name)
	}
	if err := slipway.ValidateName("model", sch.Batch.Model); sch.Batch.Deployment == "" && err != nil {
		return err
	}
	return nil
}

func (t batchTarget) Start(ctx context.Context, sch *slipway.Schedule, trigger string) (string, error) {
	run, err := t.svc.Create(ctx, *sch.Batch, trigger)
	if err != nil {
		return "", err
	}
	return run.ID, nil
}

func (t batchTarget) Active(ctx context.Context, runID string) (bool, error) {
	run, err := t.svc.Get(ctx, runID)
	if err != nil {
		return false, err
	}
	return !run.State.Terminal(), nil
}

func (t batchTarget) Cancel(ctx context.Context, runID, by string) error {
	_, err := t.svc.Cancel(ctx, runID, by)
	return err
}
