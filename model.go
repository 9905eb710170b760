package slipway

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Model is a named family of versions.
type Model struct {
	Name          string            `json:"name"`
	Description   string            `json:"description"`
	Tags          map[string]string `json:"tags"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
	LatestVersion int               `json:"latest_version"`
	Aliases       map[string]int    `json:"aliases"`

	// Project is the project it belongs to (docs/projects.md).
	Project string `json:"project,omitempty"`
}

// VersionState is the lifecycle of a model version: REGISTERING → READY, or FAILED with failing checks.
type VersionState string

const (
	VersionRegistering VersionState = "REGISTERING"
	VersionReady       VersionState = "READY"
	VersionFailed      VersionState = "FAILED"
)

// Runtime names how a version is run.
const (
	RuntimePython = "python"
	RuntimeONNX   = "onnx"
)

// ModelVersion is an immutable artifact plus its metadata.
type ModelVersion struct {
	Model     string       `json:"model"`
	Version   int          `json:"version"`
	State     VersionState `json:"state"`
	CreatedAt time.Time    `json:"created_at"`
	CreatedBy string       `json:"created_by"`
	VersionMetadata
	Digest  string   `json:"digest"` // sha256 of the manifest
	Size    int64    `json:"size"`
	Files   []File   `json:"files"`
	Aliases []string `json:"aliases"`
	Checks  []Check  `json:"checks"`
}

// VersionMetadata is what the client supplies at registration (the `metadata` part). Every field is optional
// except runtime (inferred from the artifact when absent).
type VersionMetadata struct {
	Runtime                  string             `json:"runtime"`
	Description              string             `json:"description,omitempty"`
	Tags                     map[string]string  `json:"tags,omitempty"`
	InputSchema              *Schema            `json:"input_schema,omitempty"`
	OutputSchema             *Schema            `json:"output_schema,omitempty"`
	SampleInput              json.RawMessage    `json:"sample_input,omitempty"`
	Metrics                  map[string]float64 `json:"metrics,omitempty"`
	Taxonomy                 *Taxonomy          `json:"taxonomy,omitempty"`
	Provenance               *Provenance        `json:"provenance,omitempty"`
	Environment              *Environment       `json:"environment,omitempty"`
	AllowEnvironmentMismatch bool               `json:"allow_environment_mismatch,omitempty"`
	// PredictInput is what a python model's predict() is handed for a table, as found at registration when
	// its replica loaded: "numpy" (the 2-D block; runtime.yaml SLIPWAY.PREDICT_INPUT or predict's annotation)
	// or "dataframe". Set by the server; a value sent with the metadata is replaced.
	PredictInput string `json:"predict_input,omitempty"`
}

// Schema describes the columns (features) of an input or output.
type Schema struct {
	Columns []ColumnSpec `json:"columns"`
}

// ColumnSpec is one feature: name, dtype (numpy-style: float64, float32, int64, int32, bool, string), optional
// shape for tensors (-1 marks a variable dimension) and an optional domain.
type ColumnSpec struct {
	Name    string   `json:"name"`
	Dtype   string   `json:"dtype"`
	Shape   []int64  `json:"shape,omitempty"`
	Allowed []any    `json:"allowed,omitempty"`
	Min     *float64 `json:"min,omitempty"`
	Max     *float64 `json:"max,omitempty"`
}

// Taxonomy classifies the model.
type Taxonomy struct {
	UseCase          string         `json:"use_case,omitempty"`
	Framework        string         `json:"framework,omitempty"`
	FrameworkVersion string         `json:"framework_version,omitempty"`
	Algorithm        string         `json:"algorithm,omitempty"`
	Hyperparameters  map[string]any `json:"hyperparameters,omitempty"`
}

// Provenance records where a version came from.
type Provenance struct {
	GitRepo        string `json:"git_repo,omitempty"`
	GitBranch      string `json:"git_branch,omitempty"`
	GitCommit      string `json:"git_commit,omitempty"`
	TrainingScript string `json:"training_script,omitempty"`
	TrainingData   string `json:"training_data,omitempty"`
	TrainingRun    string `json:"training_run,omitempty"`
	Author         string `json:"author,omitempty"`
}

// Environment is the training environment: the Python version and package versions.
type Environment struct {
	// Name selects the server's Python environment that serves the version (--python-env NAME=...; runtime.yaml's
	// INFERENCE_ENV_SLUG says the same); empty: the default one (--python).
	Name     string            `json:"name,omitempty"`
	Python   string            `json:"python,omitempty"`
	Packages map[string]string `json:"packages,omitempty"`
}

// File is one entry of a version's manifest.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Mode   uint32 `json:"mode"`
}

// Check is the result of one introspection check run at registration.
type Check struct {
	ID      string `json:"id"`
	Passed  bool   `json:"passed"`
	Message string `json:"message"`
}

// AliasMove is one entry of an alias's history.
type AliasMove struct {
	Model       string    `json:"model"`
	Alias       string    `json:"alias"`
	Version     int       `json:"version"`
	FromVersion *int      `json:"from_version,omitempty"`
	MovedAt     time.Time `json:"moved_at"`
	MovedBy     string    `json:"moved_by"`
}

// ModelFilter selects models. Tag is "key" or "key=value".
type ModelFilter struct {
	Name   string // substring
	Tag    string
	Offset int
	Limit  int
}

// ModelUpdate changes a model's mutable fields; nil means unchanged.
type ModelUpdate struct {
	Description *string            `json:"description"`
	Tags        *map[string]string `json:"tags"`
}

// VersionRef names a version by number or by alias (exactly one is set).
type VersionRef struct {
	Number int
	Alias  string
}

func (r VersionRef) String() string {
	if r.Alias != "" {
		return "@" + r.Alias
	}
	return strconv.Itoa(r.Number)
}

// ValidateName checks a model, alias, deployment or job name: lowercase letters, digits, '.', '_', '-',
// 1–64 characters, starting and ending with a letter or digit. Names appear in URLs and file names.
func ValidateName(kind, name string) error {
	if !validName(name) {
		return Errorf(EINVALID, "invalid %s name %q: use 1-64 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// validName is ^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$ without a regexp: every prediction request checks the
// deployment name in its path, and the regexp was 2.5% of the server's CPU per request.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !alnum(c) && ((c != '.' && c != '_' && c != '-') || i == 0 || i == len(name)-1) {
			return false
		}
	}
	return true
}

// ParseVersionRef parses "3" or "@champion" (also "champion" when it is not a number).
func ParseVersionRef(s string) (VersionRef, error) {
	if s == "" {
		return VersionRef{}, Errorf(EINVALID, "missing version: give a number or @alias")
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return VersionRef{}, Errorf(EINVALID, "invalid version %q: versions start at 1", s)
		}
		return VersionRef{Number: n}, nil
	}
	alias := strings.TrimPrefix(s, "@")
	if err := ValidateName("alias", alias); err != nil {
		return VersionRef{}, err
	}
	return VersionRef{Alias: alias}, nil
}

// ParseModelRef parses "churn", "churn@champion" or "churn:3" into a model name and a version reference.
// Without a version part, ref is the zero VersionRef (caller decides: latest or error).
func ParseModelRef(s string) (model string, ref VersionRef, err error) {
	if i := strings.IndexAny(s, "@:"); i >= 0 {
		model = s[:i]
		part := s[i+1:]
		if s[i] == '@' {
			part = "@" + part
		}
		ref, err = ParseVersionRef(part)
	} else {
		model = s
	}
	if err == nil {
		err = ValidateName("model", model)
	}
	return model, ref, err
}

// ModelStore persists models, versions and aliases.
type ModelStore interface {
	CreateModel(ctx context.Context, m *Model) error
	FindModel(ctx context.Context, name string) (*Model, error)
	FindModels(ctx context.Context, f ModelFilter) ([]*Model, int, error)
	UpdateModel(ctx context.Context, name string, u ModelUpdate) (*Model, error)
	DeleteModel(ctx context.Context, name string) error

	// CreateVersion allocates the next version number of the model (creating the model if needed) and stores v
	// in state REGISTERING; v.Version is set.
	CreateVersion(ctx context.Context, v *ModelVersion) error
	// FinishVersion stores the manifest and checks of a REGISTERING version and moves it to READY or FAILED.
	FinishVersion(ctx context.Context, v *ModelVersion) error
	FindVersion(ctx context.Context, model string, ref VersionRef) (*ModelVersion, error)
	FindVersions(ctx context.Context, model string, offset, limit int) ([]*ModelVersion, int, error)
	// StoreVersionFiles records the manifest of a REGISTERING version whose checks run later (asynchronous
	// registration): a crash then leaves a version whose checks can run again.
	StoreVersionFiles(ctx context.Context, v *ModelVersion) error
	// DeleteStaleRegistering removes versions a crash left REGISTERING before their files were recorded;
	// returns what it removed.
	DeleteStaleRegistering(ctx context.Context) ([]*ModelVersion, error)
	// FindRegistering returns the versions left REGISTERING with their files recorded: their checks are due.
	FindRegistering(ctx context.Context) ([]*ModelVersion, error)

	SetAlias(ctx context.Context, model, alias string, version int, by string) (*AliasMove, error)
	DeleteAlias(ctx context.Context, model, alias, by string) error
	FindAliasHistory(ctx context.Context, model, alias string) ([]*AliasMove, error)
	// ReferencedDigests returns every blob digest referenced by a manifest (for garbage collection).
	ReferencedDigests(ctx context.Context) (map[string]bool, error)
}
