package batch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway-ml/slipway"
)

// Create validates a request, checks everything that can be checked before scoring (the model version, the
// input and its columns, the connection and table name), stores the run in ACCEPTED and starts it.
func (s *Service) Create(ctx context.Context, spec slipway.BatchSpec, by string) (*slipway.BatchRun, error) {
	if err := normalize(&spec); err != nil {
		return nil, err
	}
	v, err := s.resolve(ctx, &spec)
	if err != nil {
		return nil, err
	}
	spec.Source = nil
	src, fp, err := s.openSource(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer s.closeSource(src, "model", v.Model, "version", v.Version)
	spec.Source = fp
	if _, err := buildPlan(ctx, src, v, spec.KeyColumns); err != nil {
		return nil, err
	}
	if err := s.checkOutput(ctx, spec); err != nil {
		return nil, err
	}
	run := &slipway.BatchRun{ID: newID("b-"), State: slipway.BatchAccepted, Model: v.Model, Version: v.Version,
		Spec: spec, RowsTotal: -1, Output: spec.Output, CreatedBy: by}
	// The lease before the run exists: no other server may take it for an orphan.
	if err := s.acquireRun(ctx, run.ID); err != nil {
		return nil, err
	}
	if err := s.store.CreateBatchRun(ctx, run); err != nil {
		s.releaseRun(run.ID)
		return nil, err
	}
	s.log.Info("batch prediction accepted", "run_id", run.ID, "model", run.Model, "version", run.Version, "by", by)
	s.launch(run)
	return s.Get(ctx, run.ID)
}

// normalize fills defaults and checks the request's shape.
func normalize(sp *slipway.BatchSpec) error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	refs := 0
	for _, set := range []bool{sp.Version != 0, sp.Alias != "", sp.Deployment != ""} {
		if set {
			refs++
		}
	}
	switch {
	case refs > 1:
		add("give one of version, alias or deployment")
	case sp.Deployment == "" && sp.Model == "":
		add("model is required (or give a deployment)")
	}
	if sp.Model != "" {
		if err := slipway.ValidateName("model", sp.Model); err != nil {
			add("%s", slipway.ErrorMessage(err))
		}
	}
	sp.Alias = strings.TrimPrefix(sp.Alias, "@")
	if sp.Version < 0 {
		add("version must be ≥ 1")
	}
	in := sp.Input
	kinds := 0
	for _, set := range []bool{in.Path != "", in.File != "", in.Connection != "" || in.Query != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		add(`input needs exactly one of {"path": "relative/to/import-dir", "format": "csv|jsonl|parquet"}, {"file": "<id from POST /api/v1/files>"} or {"connection": "NAME", "query": "SELECT ..."}`)
	case in.Connection != "" && in.Query == "":
		add("input.query is required with input.connection")
	case in.Query != "" && in.Connection == "":
		add("input.connection is required with input.query (GET /api/v1/connections lists them)")
	case in.Query != "" && len(sp.KeyColumns) == 0:
		add("key_columns is required with a query input: the query is read ORDER BY the key columns, so that a resumed run reads the same rows in the same order")
	case in.Query != "" && in.Format != "":
		add("input.format does not apply to a query input")
	}
	if in.Format != "" && in.Format != FormatCSV && in.Format != FormatJSONL && in.Format != FormatParquet {
		add("input.format %q: use csv, jsonl or parquet", in.Format)
	}
	out := sp.Output
	switch {
	case out.Format != "" && (out.Connection != "" || out.Table != ""):
		add(`output is either {"connection": "NAME", "table": "TABLE"} or {"format": "parquet|csv"}, not both`)
	case out.Format != "":
		if out.Format != FormatCSV && out.Format != FormatParquet {
			add("output.format %q: use parquet or csv", out.Format)
		}
	case out.Connection == "" || out.Table == "":
		add(`output needs {"connection": "NAME", "table": "TABLE"} or {"format": "parquet|csv"}`)
	}
	sp.Output.Download, sp.Output.Size = "", 0
	seen := map[string]bool{}
	for _, k := range sp.KeyColumns {
		switch {
		case strings.TrimSpace(k) == "" || strings.ContainsRune(k, 0):
			add("key_columns has an empty name")
		case seen[k]:
			add("key column %q is listed twice", k)
		case isMetaName(k):
			add("key column %q clashes with a column every output row carries (model, model_version, batch_id, scored_at)", k)
		}
		seen[k] = true
	}
	if sp.ChunkSize == 0 {
		sp.ChunkSize = DefaultChunkSize
	}
	if sp.ChunkSize < 1 || sp.ChunkSize > MaxChunkSize {
		add("chunk_size must be 1-%d, got %d", MaxChunkSize, sp.ChunkSize)
	}
	if sp.Parallel == 0 {
		sp.Parallel = DefaultParallelism
	}
	if sp.Parallel < 1 || sp.Parallel > MaxParallelism {
		add("parallelism must be 1-%d, got %d", MaxParallelism, sp.Parallel)
	}
	if sp.TimeoutMS == 0 {
		sp.TimeoutMS = DefaultTimeoutMS
	}
	if sp.TimeoutMS < 1 || sp.TimeoutMS > 3_600_000 {
		add("chunk_timeout_ms must be 1-3600000, got %d", sp.TimeoutMS)
	}
	switch sp.OnBadRows {
	case "":
		sp.OnBadRows = slipway.BadRowsFail
	case slipway.BadRowsFail, slipway.BadRowsSkip:
	default:
		add("on_bad_rows %q: use fail or skip", sp.OnBadRows)
	}
	if len(problems) > 0 {
		return slipway.Errorf(slipway.EINVALID, "batch prediction: %s", strings.Join(problems, "; "))
	}
	return nil
}

func isMetaName(name string) bool {
	for _, m := range metaCols {
		if m.name == name {
			return true
		}
	}
	return false
}

// resolve finds the READY version the spec names, pinning model and version for the run's lifetime.
func (s *Service) resolve(ctx context.Context, sp *slipway.BatchSpec) (*slipway.ModelVersion, error) {
	ref := slipway.VersionRef{Number: sp.Version, Alias: sp.Alias}
	if sp.Deployment != "" {
		if err := slipway.ValidateName("deployment", sp.Deployment); err != nil {
			return nil, err
		}
		d, err := s.deploys.FindDeployment(ctx, sp.Deployment)
		if err != nil {
			return nil, err
		}
		if sp.Model != "" && sp.Model != d.Model {
			return nil, slipway.Errorf(slipway.EINVALID, "deployment %s serves model %s, not %s", d.Name, d.Model, sp.Model)
		}
		sp.Model, ref = d.Model, slipway.VersionRef{Number: d.Version}
	} else if ref.Number == 0 && ref.Alias == "" {
		ref.Alias = "latest"
	}
	v, err := s.models.FindVersion(ctx, sp.Model, ref)
	if err != nil {
		return nil, err
	}
	if v.State != slipway.VersionReady {
		return nil, slipway.Errorf(slipway.ECONFLICT, "version %d of model %s is %s: only READY versions can score", v.Version, v.Model, v.State)
	}
	return v, nil
}

// openSource opens the spec's input; for files it also returns their fingerprint, and refuses a file that
// changed since the fingerprint in the spec was taken (a resumed run must read the same data).
func (s *Service) openSource(ctx context.Context, sp slipway.BatchSpec) (source, *slipway.BatchSource, error) {
	in := sp.Input
	if in.Connection != "" {
		conn, err := s.conn(in.Connection)
		if err != nil {
			return nil, nil, err
		}
		src, err := newSQLSource(ctx, conn, in.Query, sp.KeyColumns)
		return src, nil, err
	}
	format := in.Format
	var open func() (*os.File, error)
	var label string
	var upload *slipway.UploadedFile
	if in.File != "" {
		f, err := s.File(ctx, in.File)
		if err != nil {
			return nil, nil, err
		}
		if format == "" {
			format = formatOf(f.Name)
		}
		if format == "" {
			return nil, nil, slipway.Errorf(slipway.EINVALID, "cannot tell the format of uploaded file %s (%s) from its name: give input.format (csv, jsonl or parquet)", f.ID, f.Name)
		}
		label = "uploaded file " + f.ID
		open = func() (*os.File, error) { // fetched again if its cached copy was evicted meanwhile
			p, _, err := s.blobFile(ctx, f.SHA256, label)
			if err != nil {
				return nil, err
			}
			return os.Open(p)
		}
		upload = f
	} else {
		rel := filepath.Clean(filepath.FromSlash(in.Path))
		if filepath.IsAbs(in.Path) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return nil, nil, slipway.Errorf(slipway.EINVALID, "input.path %q leaves the import folder: give a path relative to the server's --import-dir", in.Path)
		}
		if format == "" {
			format = formatOf(rel)
		}
		if format == "" {
			return nil, nil, slipway.Errorf(slipway.EINVALID, "cannot tell the format of %q from its name: give input.format (csv, jsonl or parquet)", in.Path)
		}
		importDir := s.importDir
		open = func() (*os.File, error) { // os.Root: "..", absolute paths and symbolic links out are refused
			root, err := os.OpenRoot(importDir)
			if err != nil {
				return nil, fmt.Errorf("open the import folder %s: %w", importDir, err)
			}
			defer root.Close()
			return root.Open(rel)
		}
		label = "input.path " + in.Path
	}
	f, err := open()
	if se := (*slipway.Error)(nil); errors.As(err, &se) {
		return nil, nil, err
	} else if err != nil {
		return nil, nil, fileError(label, err)
	}
	var fp *slipway.BatchSource
	if upload != nil {
		// An upload never changes (the store keys it by its digest and checks it on every fetch): its
		// fingerprint is its record's, whichever server's copy is read.
		fp = &slipway.BatchSource{Size: upload.Size, ModTime: upload.CreatedAt.UTC()}
	} else {
		fp, err = fingerprint(f, label, sp.Source)
	}
	if err != nil {
		_ = f.Close() // read-only: the error returned says what is wrong with the input
		return nil, nil, err
	}
	var src source
	switch format {
	case FormatParquet:
		src, err = newParquetSource(f) // owns f from here
	case FormatCSV:
		_ = f.Close() // read-only, opened for the fingerprint only: the CSV source reopens the file
		src, err = newCSVSource(open)
	case FormatJSONL:
		_ = f.Close() // as for CSV
		src, err = newJSONLSource(open)
	}
	if err != nil {
		return nil, nil, err
	}
	return src, fp, nil
}

// fingerprint records the size and modification time of the input open as f, and checks them against old,
// the fingerprint a resumed run started with (nil for a new run).
func fingerprint(f *os.File, label string, old *slipway.BatchSource) (*slipway.BatchSource, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fileError(label, err)
	}
	if st.IsDir() {
		return nil, slipway.Errorf(slipway.EINVALID, "%s is a folder: give a file", label)
	}
	fp := &slipway.BatchSource{Size: st.Size(), ModTime: st.ModTime().UTC()}
	if old != nil && (old.Size != fp.Size || !old.ModTime.Equal(fp.ModTime)) {
		return nil, slipway.Errorf(slipway.ECONFLICT, "%s changed since the run started (size %d → %d, modified %s → %s): a resumed run must read the same rows; start a new run",
			label, old.Size, fp.Size, old.ModTime.Format("2006-01-02T15:04:05Z"), fp.ModTime.Format("2006-01-02T15:04:05Z"))
	}
	return fp, nil
}

func fileError(label string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return slipway.Errorf(slipway.EINVALID, "%s: no such file", label)
	case errors.Is(err, fs.ErrPermission):
		return slipway.Errorf(slipway.EINVALID, "%s: the server may not read it (permission denied)", label)
	case strings.Contains(err.Error(), "escapes from parent") || strings.Contains(err.Error(), "path escapes"):
		return slipway.Errorf(slipway.EINVALID, "%s leaves the import folder (a symbolic link out of it?): only files under --import-dir can be read", label)
	}
	return slipway.Wrap(slipway.EINVALID, err, "%s cannot be read: %v", label, err)
}

func (s *Service) conn(name string) (*Conn, error) {
	c, ok := s.conns[name]
	if !ok {
		names := make([]string, 0, len(s.conns))
		for _, c := range publicConnections(s.conns) {
			names = append(names, c.Name)
		}
		if len(names) == 0 {
			return nil, slipway.Errorf(slipway.EINVALID, "unknown connection %q: the server has no connections (start it with --connection NAME=sqlite:///path.db or NAME=postgres://...)", name)
		}
		return nil, slipway.Errorf(slipway.EINVALID, "unknown connection %q: the server has %s", name, strings.Join(names, ", "))
	}
	return c, nil
}

// checkOutput checks the output's connection and table name before the run is accepted.
func (s *Service) checkOutput(ctx context.Context, sp slipway.BatchSpec) error {
	if sp.Output.Format != "" {
		return nil
	}
	c, err := s.conn(sp.Output.Connection)
	if err != nil {
		return err
	}
	if _, err := parseTable(c.Driver, sp.Output.Table); err != nil {
		return err
	}
	return c.ping(ctx)
}

// feature is a model input read from the input.
type feature struct {
	sel  int // index in plan.sel
	name string
	dt   string // datatype the model receives
}

// plan says which input columns a run reads and what each becomes.
type plan struct {
	sel      []selected
	features []feature
	keys     []int // indices in sel
	keyCols  []outCol
}

// buildPlan matches the input's columns with the model's input schema (or, without one, takes every
// column that is not a key as a feature) and the key columns, refusing missing columns and types that
// cannot carry the schema's dtype.
func buildPlan(ctx context.Context, src source, v *slipway.ModelVersion, keys []string) (*plan, error) {
	cols := src.columns()
	index := map[string]int{}
	names := make([]string, len(cols))
	for i, c := range cols {
		index[c.name] = i
		names[i] = c.name
	}
	have := quoteNames(names)
	p := &plan{}
	var untyped []int // sel entries whose kind must be sampled
	for _, k := range keys {
		i, ok := index[k]
		if !ok {
			return nil, slipway.Errorf(slipway.EINVALID, "key column %q is not in the input (it has %s)", k, have)
		}
		p.keys = append(p.keys, len(p.sel))
		if cols[i].kind == kindNone {
			untyped = append(untyped, len(p.sel))
		}
		p.sel = append(p.sel, selected{src: i, name: k, kind: cols[i].kind})
	}
	if v.InputSchema != nil && len(v.InputSchema.Columns) > 0 {
		var missing []string
		for _, sc := range v.InputSchema.Columns {
			if _, ok := index[sc.Name]; !ok {
				missing = append(missing, sc.Name)
			}
		}
		if len(missing) > 0 {
			return nil, slipway.Errorf(slipway.EINVALID, "the input is missing %s, required by the input schema of %s version %d (the input has %s)",
				plural("column", missing), v.Model, v.Version, have)
		}
		for _, sc := range v.InputSchema.Columns {
			i := index[sc.Name]
			k, dt, ok := tensorKind(sc.Dtype)
			if !ok {
				return nil, slipway.Errorf(slipway.EINVALID, "the input schema's feature %q has dtype %q, which batch predictions cannot build", sc.Name, sc.Dtype)
			}
			if len(sc.Shape) > 1 {
				return nil, slipway.Errorf(slipway.EINVALID, "the input schema's feature %q is a tensor (shape %v): batch inputs carry one value per column per row", sc.Name, sc.Shape)
			}
			if have := cols[i].kind; have != kindNone && !carries(have, k) {
				return nil, slipway.Errorf(slipway.EINVALID, "input column %q holds %s values; the model's input schema wants %s (%s): convert the column, or fix the schema",
					sc.Name, have, sc.Dtype, k)
			}
			p.features = append(p.features, feature{sel: len(p.sel), name: sc.Name, dt: dt})
			p.sel = append(p.sel, selected{src: i, name: sc.Name, kind: k})
		}
	} else {
		isKey := map[string]bool{}
		for _, k := range keys {
			isKey[k] = true
		}
		for i, c := range cols {
			if isKey[c.name] {
				continue
			}
			if c.kind == kindNone {
				untyped = append(untyped, len(p.sel))
			}
			p.features = append(p.features, feature{sel: len(p.sel), name: c.name})
			p.sel = append(p.sel, selected{src: i, name: c.name, kind: c.kind})
		}
		if len(p.features) == 0 {
			return nil, slipway.Errorf(slipway.EINVALID, "the input has no column besides the key columns to give the model")
		}
	}
	if len(untyped) > 0 {
		srcIdx := make([]int, len(untyped))
		for j, u := range untyped {
			srcIdx[j] = p.sel[u].src
		}
		kinds, err := src.sample(ctx, srcIdx, 1000)
		if err != nil {
			return nil, err
		}
		for j, u := range untyped {
			p.sel[u].kind = kinds[j]
		}
	}
	for i := range p.features {
		f := &p.features[i]
		if f.dt == "" {
			switch p.sel[f.sel].kind {
			case kindInt:
				f.dt = "INT64"
			case kindFloat:
				f.dt = "FP64"
			case kindBool:
				f.dt = "BOOL"
			default:
				p.sel[f.sel].kind = kindString
				f.dt = "BYTES"
			}
		}
	}
	for _, k := range p.keys {
		p.keyCols = append(p.keyCols, outCol{name: p.sel[k].name, kind: p.sel[k].kind})
	}
	return p, nil
}

// carries reports whether values of kind have can be read as kind want.
func carries(have, want kind) bool {
	switch {
	case have == want:
		return true
	case want == kindFloat && have == kindInt:
		return true
	case want == kindString && have != kindNone:
		return true
	}
	return false
}

func plural(noun string, names []string) string {
	if len(names) == 1 {
		return noun + " " + quoteNames(names)
	}
	return noun + "s " + quoteNames(names)
}

func quoteNames(names []string) string {
	q := make([]string, 0, len(names))
	for i, n := range names {
		if i == 20 {
			q = append(q, fmt.Sprintf("… (%d more)", len(names)-i))
			break
		}
		q = append(q, fmt.Sprintf("%q", n))
	}
	return strings.Join(q, ", ")
}
