package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/slipway-ml/slipway"
)

// RunInput overrides a job's arguments (nil: the job's) and adds environment variables for one run.
type RunInput struct {
	Args []string          `json:"args,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
}

// OutputFile is one file of a run's output folder.
type OutputFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// JobRunFilter selects job runs; empty fields match everything.
type JobRunFilter struct {
	Job         string
	PipelineRun string
	State       slipway.RunState
	Offset      int
	Limit       int
}

// CreateJob creates a job from spec and its artifact: a single .py/.sh/.jar file (filename names it) or a
// .zip/.tar/.tar.gz project. The server checks that the entrypoint exists.
func (c *Client) CreateJob(ctx context.Context, spec slipway.JobSpec, artifact io.Reader, filename string) (*slipway.Job, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("client: encode job spec: %w", err)
	}
	var j slipway.Job
	if err := c.postMultipart(ctx, apiPath("jobs"), "", multipartUpload{partName: "spec", partType: "application/json", part: b, artifact: artifact, filename: filename}, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// ListJobs returns every job.
func (c *Client) ListJobs(ctx context.Context) ([]*slipway.Job, error) {
	return items[*slipway.Job](ctx, c, http.MethodGet, apiPath("jobs"), nil)
}

// GetJob returns a job.
func (c *Client) GetJob(ctx context.Context, name string) (*slipway.Job, error) {
	return call[slipway.Job](ctx, c, http.MethodGet, apiPath("jobs", name), nil, nil)
}

// DeleteJob deletes a job without queued or running runs.
func (c *Client) DeleteJob(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, apiPath("jobs", name), nil, nil, nil)
}

// RunJob queues a run of a job (state ACCEPTED; it starts when a slot is free).
func (c *Client) RunJob(ctx context.Context, name string, in RunInput) (*slipway.JobRun, error) {
	return call[slipway.JobRun](ctx, c, http.MethodPost, apiPath("jobs", name, "runs"), nil, in)
}

// ListJobRuns lists job runs, newest first, with the total matching.
func (c *Client) ListJobRuns(ctx context.Context, f JobRunFilter) ([]*slipway.JobRun, int, error) {
	q := pageQuery(nil, f.Offset, f.Limit)
	for k, v := range map[string]string{"job": f.Job, "pipeline_run": f.PipelineRun, "state": string(f.State)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return itemsAndTotal[*slipway.JobRun](ctx, c, apiPath("job-runs"), q)
}

// GetJobRun returns a job run.
func (c *Client) GetJobRun(ctx context.Context, id string) (*slipway.JobRun, error) {
	return call[slipway.JobRun](ctx, c, http.MethodGet, apiPath("job-runs", id), nil, nil)
}

// CancelJobRun cancels a run; it returns once the run is CANCELED (its whole process group gone).
func (c *Client) CancelJobRun(ctx context.Context, id string) (*slipway.JobRun, error) {
	return call[slipway.JobRun](ctx, c, http.MethodPost, apiPath("job-runs", id, "cancel"), nil, nil)
}

// JobRunLogs opens a run's log from byte offset; with follow the body streams until the run is over (or the
// server ends the stream: resume from the bytes read so far, as FollowJobRunLogs does).
func (c *Client) JobRunLogs(ctx context.Context, id string, offset int64, follow bool) (io.ReadCloser, error) {
	q := url.Values{}
	if offset > 0 {
		q.Set("offset", strconv.FormatInt(offset, 10))
	}
	if follow {
		q.Set("follow", "1")
	}
	return c.open(ctx, apiPath("job-runs", id, "logs"), q, "")
}

// FollowJobRunLogs copies a run's log to w as it grows until the run is over, reconnecting where it left
// off when a stream ends early (server restart, shutdown), and returns the finished run.
func (c *Client) FollowJobRunLogs(ctx context.Context, id string, w io.Writer) (*slipway.JobRun, error) {
	var off int64
	for {
		body, err := c.JobRunLogs(ctx, id, off, true)
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(w, body)
		_ = body.Close() // read to its end or failed: err says which
		off += n
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r, gerr := c.GetJobRun(ctx, id)
		if gerr != nil {
			return nil, gerr
		}
		if r.State.Terminal() {
			// Lines written between the last read and the end.
			// Best effort: the run is over and its state is the answer, with or without the tail of the log.
			if rest, err := c.JobRunLogs(ctx, id, off, false); err == nil {
				_, _ = io.Copy(w, rest)
				_ = rest.Close()
			}
			return r, nil
		}
		if err != nil || n == 0 {
			select { // the server ended the stream without data: do not spin
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
}

// ListJobRunOutputs lists the files a run left in its output folder.
func (c *Client) ListJobRunOutputs(ctx context.Context, id string) ([]OutputFile, error) {
	return items[OutputFile](ctx, c, http.MethodGet, apiPath("job-runs", id, "outputs"), nil)
}

// DownloadJobRunOutput opens one output file of a run.
func (c *Client) DownloadJobRunOutput(ctx context.Context, id, path string) (io.ReadCloser, error) {
	return c.open(ctx, apiPath("job-runs", id, "outputs", "file"), url.Values{"path": {path}}, "")
}

// WaitJobRun polls a run every poll (DefaultPoll when 0) until it is over or ctx ends.
func (c *Client) WaitJobRun(ctx context.Context, id string, poll time.Duration) (*slipway.JobRun, error) {
	return waitFor(ctx, "job run "+id, poll, func() (*slipway.JobRun, bool, error) {
		r, err := c.GetJobRun(ctx, id)
		return r, err == nil && r.State.Terminal(), err
	})
}

// waitFor calls get at once and then every poll (DefaultPoll when ≤ 0) until it says done, it fails or ctx
// ends, and returns the last value get gave. When ctx ends first (also during a poll), the error wraps ctx.Err()
// and names what was waited for, so that the caller can say what state it was stuck in; any other error of get
// ends the wait with that error.
func waitFor[T any](ctx context.Context, what string, poll time.Duration, get func() (T, bool, error)) (T, error) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	var last T
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("client: wait for %s: %w", what, ctx.Err())
		case <-t.C:
		}
		v, done, err := get()
		if err != nil {
			if ctx.Err() != nil {
				return last, fmt.Errorf("client: wait for %s: %w", what, ctx.Err())
			}
			return last, err
		}
		last = v
		if done {
			return v, nil
		}
		t.Reset(poll)
	}
}

// CreatePipeline creates a pipeline from its definition (JSON or YAML). artifact, when not nil, is the
// project folder (an archive) its script steps run in.
func (c *Client) CreatePipeline(ctx context.Context, definition []byte, artifact io.Reader, filename string) (*slipway.Pipeline, error) {
	var p slipway.Pipeline
	ct := "application/yaml"
	if t := bytes.TrimSpace(definition); len(t) > 0 && t[0] == '{' {
		ct = "application/json"
	}
	var err error
	if artifact != nil {
		err = c.postMultipart(ctx, apiPath("pipelines"), "", multipartUpload{partName: "pipeline", partType: ct, part: definition, artifact: artifact, filename: filename}, &p)
	} else {
		err = c.doRaw(ctx, http.MethodPost, apiPath("pipelines"), nil, bytes.NewReader(definition), ct, &p)
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// ListPipelines returns every pipeline.
func (c *Client) ListPipelines(ctx context.Context) ([]*slipway.Pipeline, error) {
	return items[*slipway.Pipeline](ctx, c, http.MethodGet, apiPath("pipelines"), nil)
}

// GetPipeline returns a pipeline.
func (c *Client) GetPipeline(ctx context.Context, name string) (*slipway.Pipeline, error) {
	return call[slipway.Pipeline](ctx, c, http.MethodGet, apiPath("pipelines", name), nil, nil)
}

// DeletePipeline deletes a pipeline without runs in progress.
func (c *Client) DeletePipeline(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, apiPath("pipelines", name), nil, nil, nil)
}

// RunPipeline starts a run with params merged over the pipeline's defaults.
func (c *Client) RunPipeline(ctx context.Context, name string, params map[string]any) (*slipway.PipelineRun, error) {
	var r slipway.PipelineRun
	body := map[string]any{"params": params}
	if err := c.do(ctx, http.MethodPost, apiPath("pipelines", name, "runs"), nil, body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ListPipelineRuns lists runs (of one pipeline when pipeline is not empty), newest first.
func (c *Client) ListPipelineRuns(ctx context.Context, pipeline string, offset, limit int) ([]*slipway.PipelineRun, int, error) {
	q := pageQuery(nil, offset, limit)
	if pipeline != "" {
		q.Set("pipeline", pipeline)
	}
	return itemsAndTotal[*slipway.PipelineRun](ctx, c, apiPath("pipeline-runs"), q)
}

// GetPipelineRun returns a run with its steps.
func (c *Client) GetPipelineRun(ctx context.Context, id string) (*slipway.PipelineRun, error) {
	return call[slipway.PipelineRun](ctx, c, http.MethodGet, apiPath("pipeline-runs", id), nil, nil)
}

// CancelPipelineRun asks a run to stop (it ends CANCELED after its on_exit step).
func (c *Client) CancelPipelineRun(ctx context.Context, id string) (*slipway.PipelineRun, error) {
	return call[slipway.PipelineRun](ctx, c, http.MethodPost, apiPath("pipeline-runs", id, "cancel"), nil, nil)
}

// RetryPipelineRun resumes a FAILED or CANCELED run from its failed steps.
func (c *Client) RetryPipelineRun(ctx context.Context, id string) (*slipway.PipelineRun, error) {
	return call[slipway.PipelineRun](ctx, c, http.MethodPost, apiPath("pipeline-runs", id, "retry"), nil, nil)
}

// WaitPipelineRun polls a run every poll (DefaultPoll when 0) until it is over or ctx ends.
func (c *Client) WaitPipelineRun(ctx context.Context, id string, poll time.Duration) (*slipway.PipelineRun, error) {
	return waitFor(ctx, "pipeline run "+id, poll, func() (*slipway.PipelineRun, bool, error) {
		r, err := c.GetPipelineRun(ctx, id)
		return r, err == nil && r.State.Terminal(), err
	})
}

// ScheduleSpec is the body of CreateSchedule.
type ScheduleSpec = slipway.ScheduleSpec

// CreateSchedule creates a schedule.
func (c *Client) CreateSchedule(ctx context.Context, spec ScheduleSpec) (*slipway.Schedule, error) {
	return call[slipway.Schedule](ctx, c, http.MethodPost, apiPath("schedules"), nil, spec)
}

// ListSchedules returns every schedule with its next tick.
func (c *Client) ListSchedules(ctx context.Context) ([]*slipway.Schedule, error) {
	return items[*slipway.Schedule](ctx, c, http.MethodGet, apiPath("schedules"), nil)
}

// GetSchedule returns a schedule with its recent ticks.
func (c *Client) GetSchedule(ctx context.Context, name string) (*slipway.Schedule, error) {
	return call[slipway.Schedule](ctx, c, http.MethodGet, apiPath("schedules", name), nil, nil)
}

// DeleteSchedule deletes a schedule.
func (c *Client) DeleteSchedule(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, apiPath("schedules", name), nil, nil, nil)
}
