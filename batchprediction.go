package slipway

import (
	"context"
	"time"
)

// BatchState is the lifecycle of a batch prediction run (the job-run states).
type BatchState string

const (
	BatchAccepted   BatchState = "ACCEPTED"    // stored, waiting for a free run slot
	BatchInProgress BatchState = "IN_PROGRESS" // scoring; resumed at server start after a crash
	BatchSucceeded  BatchState = "SUCCEEDED"
	BatchFailed     BatchState = "FAILED"
	BatchCanceled   BatchState = "CANCELED"
)

// Terminal reports whether no further state change can happen.
func (s BatchState) Terminal() bool {
	return s == BatchSucceeded || s == BatchFailed || s == BatchCanceled
}

// CanMoveTo reports whether s → to is a legal transition.
func (s BatchState) CanMoveTo(to BatchState) bool {
	switch s {
	case BatchAccepted:
		return to == BatchInProgress || to == BatchFailed || to == BatchCanceled
	case BatchInProgress:
		return to == BatchSucceeded || to == BatchFailed || to == BatchCanceled
	}
	return false
}

// Bad-row policies.
const (
	BadRowsFail = "fail" // the first bad row fails the run
	BadRowsSkip = "skip" // bad rows are left out and recorded with their row range
)

// BatchSpec is what a client asks for: which model, what to read, where to write.
type BatchSpec struct {
	Model      string       `json:"model"`
	Version    int          `json:"version,omitempty"`
	Alias      string       `json:"alias,omitempty"`
	Deployment string       `json:"deployment,omitempty"`
	Input      BatchInput   `json:"input"`
	Output     BatchOutput  `json:"output"`
	KeyColumns []string     `json:"key_columns,omitempty"`
	ChunkSize  int          `json:"chunk_size,omitempty"`
	Parallel   int          `json:"parallelism,omitempty"`
	OnBadRows  string       `json:"on_bad_rows,omitempty"`
	TimeoutMS  int          `json:"chunk_timeout_ms,omitempty"`
	Source     *BatchSource `json:"source_fingerprint,omitempty"` // set by the server: the input as first seen
}

// BatchInput is one of: a file under the import folder (Format + Path), an uploaded file (File, Format
// optional), or a query on a named connection (Connection + Query).
type BatchInput struct {
	Format     string `json:"format,omitempty"` // csv, jsonl, parquet
	Path       string `json:"path,omitempty"`
	File       string `json:"file,omitempty"`
	Connection string `json:"connection,omitempty"`
	Query      string `json:"query,omitempty"`
}

// BatchOutput is one of: a table on a named connection, or a file (Format) kept by the server.
type BatchOutput struct {
	Connection string `json:"connection,omitempty"`
	Table      string `json:"table,omitempty"`
	Format     string `json:"format,omitempty"` // parquet, csv
	// Filled by the server for file outputs once the run succeeded.
	Download string `json:"download,omitempty"`
	Size     int64  `json:"size,omitempty"`
	// SHA256 is the output file's digest: it is kept in the installation's artifact store under it, so that
	// every server serves it (and checks it as it reads it).
	SHA256 string `json:"sha256,omitempty"`
}

// BatchPart is one committed chunk of a run's file output: the chunk's rows, encoded in the output's format,
// are the blob Digest in the installation's artifact store. The part's record is the chunk's checkpoint,
// shared by every server, so that whichever server resumes the run skips the chunks committed before.
type BatchPart struct {
	Chunk   int
	Digest  string // "" when every row of the chunk was skipped (nothing is stored then)
	Rows    int64
	Skipped int64
	Errors  []BatchError
}

// BatchSource fingerprints a file input so that a resumed run can tell whether it changed.
type BatchSource struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
}

// BatchError records a failed chunk or skipped rows: rows are 0-based data rows of the input, inclusive.
type BatchError struct {
	Chunk    int    `json:"chunk"`
	RowStart int64  `json:"row_start"`
	RowEnd   int64  `json:"row_end"`
	Message  string `json:"message"`
}

// BatchRun is one batch prediction.
type BatchRun struct {
	ID            string       `json:"id"`
	State         BatchState   `json:"state"`
	Reason        string       `json:"reason,omitempty"`
	Model         string       `json:"model"`
	Version       int          `json:"version"`
	Spec          BatchSpec    `json:"spec"`
	RowsTotal     int64        `json:"rows_total"`
	RowsDone      int64        `json:"rows_done"`
	RowsSkipped   int64        `json:"rows_skipped"`
	RowsPerSecond float64      `json:"rows_per_second"`
	Errors        []BatchError `json:"errors"`
	Output        BatchOutput  `json:"output"`
	CreatedBy     string       `json:"created_by,omitempty"`
	CreatedAt     time.Time    `json:"created_at"`
	StartedAt     *time.Time   `json:"started_at,omitempty"`
	FinishedAt    *time.Time   `json:"finished_at,omitempty"`
	UpdatedAt     time.Time    `json:"updated_at"`

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
}

// BatchProgress is a progress report of a running batch.
type BatchProgress struct {
	RowsTotal     int64
	RowsDone      int64
	RowsSkipped   int64
	RowsPerSecond float64
	Errors        []BatchError
}

// BatchFilter selects runs; nil fields match everything.
type BatchFilter struct {
	State  *BatchState
	Offset int
	Limit  int
}

// UploadedFile is an input file uploaded for batch predictions.
type UploadedFile struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
}

// Connection is a named database of the server, as the API shows it: never with credentials.
type Connection struct {
	Name     string `json:"name"`
	Driver   string `json:"driver"`   // sqlite or postgres
	Database string `json:"database"` // the path, or host:port/dbname (no user or password)
}

// BatchStore persists batch runs and uploaded files.
type BatchStore interface {
	CreateBatchRun(ctx context.Context, r *BatchRun) error
	FindBatchRun(ctx context.Context, id string) (*BatchRun, error)
	FindBatchRuns(ctx context.Context, f BatchFilter) ([]*BatchRun, int, error)
	// SetBatchState moves a run from one state to another (compare-and-set: ECONFLICT when it is no longer
	// in from), recording reason and the start or finish time.
	SetBatchState(ctx context.Context, id string, from, to BatchState, reason string) error
	UpdateBatchProgress(ctx context.Context, id string, p BatchProgress) error
	SetBatchOutput(ctx context.Context, id string, out BatchOutput) error
	// DeleteBatchRun removes a finished run's record (SUCCEEDED, FAILED or CANCELED: ECONFLICT otherwise).
	DeleteBatchRun(ctx context.Context, id string) error

	CreateUploadedFile(ctx context.Context, f *UploadedFile) error
	FindUploadedFile(ctx context.Context, id string) (*UploadedFile, error)
	FindUploadedFiles(ctx context.Context) ([]*UploadedFile, error)
	DeleteUploadedFile(ctx context.Context, id string) error

	// CommitBatchPart records a chunk of a run's file output, once: ECONFLICT when the chunk is committed
	// already (another server resumed the run meanwhile) or the run is owned by another server now.
	CommitBatchPart(ctx context.Context, runID string, p BatchPart) error
	// FindBatchParts lists a run's committed parts in chunk order.
	FindBatchParts(ctx context.Context, runID string) ([]BatchPart, error)
	// DeleteBatchParts forgets a run's parts (their blobs are the caller's to delete).
	DeleteBatchParts(ctx context.Context, runID string) error
	// BlobReferenced reports whether any record (a model version, an uploaded file, a batch part or output)
	// still refers to the blob digest: one that none does may be deleted from the artifact store.
	BlobReferenced(ctx context.Context, digest string) (bool, error)
}
