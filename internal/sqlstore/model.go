package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/slipway-ml/slipway"
)

var _ slipway.ModelStore = (*DB)(nil)

// CreateModel inserts a model; ECONFLICT if the name is taken.
func (db *DB) CreateModel(ctx context.Context, m *slipway.Model) error {
	now := db.now()
	m.CreatedAt, m.UpdatedAt = now, now
	tags, _ := json.Marshal(nonNilTags(m.Tags))
	m.Project = slipway.ProjectForCreate(ctx)
	_, err := db.w.ExecContext(ctx, `INSERT INTO models (name, description, tags, created_at, updated_at, project) VALUES (?, ?, ?, ?, ?, ?)`,
		m.Name, m.Description, string(tags), formatTime(now), formatTime(now), m.Project)
	return mapErr(err, fmt.Sprintf("model %q", m.Name))
}

func nonNilTags(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return t
}

const modelSelect = `SELECT m.name, m.description, m.tags, m.created_at, m.updated_at,
	COALESCE((SELECT MAX(version) FROM model_versions v WHERE v.model = m.name AND v.state = 'READY'), 0), m.project
	FROM models m`

func (db *DB) scanModel(ctx context.Context, row interface{ Scan(...any) error }) (*slipway.Model, error) {
	var m slipway.Model
	var tags, created, updated string
	if err := row.Scan(&m.Name, &m.Description, &tags, &created, &updated, &m.LatestVersion, &m.Project); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(tags), &m.Tags); err != nil {
		return nil, fmt.Errorf("decode tags of model %s: %w", m.Name, err)
	}
	m.CreatedAt, m.UpdatedAt = parseTime(created), parseTime(updated)
	return &m, nil
}

// FindModel returns a model with its aliases.
func (db *DB) FindModel(ctx context.Context, name string) (*slipway.Model, error) {
	cond, args := inProject(ctx, "m.project")
	m, err := db.scanModel(ctx, db.r.QueryRowContext(ctx, modelSelect+` WHERE m.name = ? AND `+cond, append([]any{name}, args...)...))
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("model %q", name))
	}
	if m.Aliases, err = db.modelAliases(ctx, name); err != nil {
		return nil, err
	}
	return m, nil
}

func (db *DB) modelAliases(ctx context.Context, model string) (map[string]int, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT alias, version FROM aliases WHERE model = ?`, model)
	if err != nil {
		return nil, mapErr(err, "aliases of "+model)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var a string
		var v int
		if err := rows.Scan(&a, &v); err != nil {
			return nil, mapErr(err, "aliases of "+model)
		}
		out[a] = v
	}
	return out, mapErr(rows.Err(), "aliases of "+model)
}

// FindModels lists models by name, filtered, with the total count before paging.
func (db *DB) FindModels(ctx context.Context, f slipway.ModelFilter) ([]*slipway.Model, int, error) {
	scope, args := inProject(ctx, "m.project")
	where := []string{scope}
	if f.Name != "" {
		where = append(where, "m.name "+db.dialect.like()+" ? ESCAPE '\\'")
		args = append(args, "%"+escapeLike(f.Name)+"%")
	}
	if f.Tag != "" {
		key, value, hasValue := strings.Cut(f.Tag, "=")
		cond, condArgs := db.dialect.tagExists("m.tags", key)
		if hasValue {
			cond, condArgs = db.dialect.tagEquals("m.tags", key, value)
		}
		where, args = append(where, cond), append(args, condArgs...)
	}
	cond := strings.Join(where, " AND ")
	var total int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM models m WHERE `+cond, args...).Scan(&total); err != nil {
		return nil, 0, mapErr(err, "models")
	}
	out, err := queryAll(ctx, db.r, func(rs rowScanner) (*slipway.Model, error) { return db.scanModel(ctx, rs) },
		"models", modelSelect+` WHERE `+cond+` ORDER BY m.name LIMIT ? OFFSET ?`, append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, 0, err
	}
	for _, m := range out {
		if m.Aliases, err = db.modelAliases(ctx, m.Name); err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// jsonPath quotes a tag key as a JSON path so that keys with dots or quotes cannot change the query.
func jsonPath(key string) string {
	b, _ := json.Marshal(key)
	return "$." + string(b)
}

// UpdateModel changes description and/or tags.
func (db *DB) UpdateModel(ctx context.Context, name string, u slipway.ModelUpdate) (*slipway.Model, error) {
	err := db.tx(ctx, func(tx *sql.Tx) error {
		if err := modelInProject(ctx, tx, name); err != nil {
			return err
		}
		if u.Description != nil {
			if err := execOne(ctx, tx, "model "+name, `UPDATE models SET description = ?, updated_at = ? WHERE name = ?`,
				*u.Description, formatTime(db.now()), name); err != nil {
				return err
			}
		}
		if u.Tags != nil {
			tags, _ := json.Marshal(nonNilTags(*u.Tags))
			if err := execOne(ctx, tx, "model "+name, `UPDATE models SET tags = ?, updated_at = ? WHERE name = ?`,
				string(tags), formatTime(db.now()), name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return db.FindModel(ctx, name)
}

// execOne runs a statement that must affect exactly one row; zero rows is ENOTFOUND.
func execOne(ctx context.Context, tx *sql.Tx, what, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	return affectedOne(res, err, what)
}

// DeleteModel deletes a model with its versions, aliases and history. Tables that use a model (deployments)
// reference it without ON DELETE CASCADE, so the database refuses while one does.
func (db *DB) DeleteModel(ctx context.Context, name string) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		cond, args := inProject(ctx, "project")
		err := execOne(ctx, tx, fmt.Sprintf("model %q", name), `DELETE FROM models WHERE name = ? AND `+cond, append([]any{name}, args...)...)
		if slipway.ErrorCode(err) == slipway.ECONFLICT {
			return slipway.Wrap(slipway.ECONFLICT, err, "model %q is used by a deployment: delete or move the deployment first", name)
		}
		return err
	})
}

// CreateVersion allocates the next version number (creating the model on first push) and stores v as REGISTERING.
func (db *DB) CreateVersion(ctx context.Context, v *slipway.ModelVersion) error {
	meta, err := json.Marshal(v.VersionMetadata)
	if err != nil {
		return fmt.Errorf("sqlstore: encode metadata: %w", err)
	}
	now := db.now()
	return db.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO models (name, description, tags, created_at, updated_at, project)
			VALUES (?, '', '{}', ?, ?, ?) ON CONFLICT (name) DO NOTHING`, v.Model, formatTime(now), formatTime(now),
			slipway.ProjectForCreate(ctx)); err != nil {
			return mapErr(err, "model "+v.Model)
		}
		if err := modelInProject(ctx, tx, v.Model); err != nil { // the name is another project's model
			return err
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model = ?`,
			v.Model).Scan(&v.Version); err != nil {
			return mapErr(err, "versions of "+v.Model)
		}
		v.State, v.CreatedAt = slipway.VersionRegistering, now
		_, err := tx.ExecContext(ctx, `INSERT INTO model_versions (model, version, state, created_at, created_by, metadata)
			VALUES (?, ?, ?, ?, ?, ?)`, v.Model, v.Version, string(v.State), formatTime(now), v.CreatedBy, string(meta))
		return mapErr(err, fmt.Sprintf("version %s:%d", v.Model, v.Version))
	})
}

// FinishVersion records manifest, metadata (possibly enriched by introspection) and checks, and the final state.
func (db *DB) FinishVersion(ctx context.Context, v *slipway.ModelVersion) error {
	meta, err := json.Marshal(v.VersionMetadata)
	if err != nil {
		return fmt.Errorf("sqlstore: encode metadata: %w", err)
	}
	files, _ := json.Marshal(v.Files)
	checks, _ := json.Marshal(v.Checks)
	return db.tx(ctx, func(tx *sql.Tx) error {
		err := execOne(ctx, tx, fmt.Sprintf("registering version %s:%d", v.Model, v.Version),
			`UPDATE model_versions SET state = ?, metadata = ?, digest = ?, size = ?, files = ?, checks = ?
			 WHERE model = ? AND version = ? AND state = 'REGISTERING'`,
			string(v.State), string(meta), v.Digest, v.Size, string(files), string(checks), v.Model, v.Version)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE models SET updated_at = ? WHERE name = ?`, formatTime(db.now()), v.Model)
		return mapErr(err, "model "+v.Model)
	})
}

// StoreVersionFiles records the manifest of a REGISTERING version (asynchronous registration).
func (db *DB) StoreVersionFiles(ctx context.Context, v *slipway.ModelVersion) error {
	files, err := json.Marshal(v.Files)
	if err != nil {
		return fmt.Errorf("sqlstore: encode files: %w", err)
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, fmt.Sprintf("registering version %s:%d", v.Model, v.Version),
			`UPDATE model_versions SET digest = ?, size = ?, files = ? WHERE model = ? AND version = ? AND state = 'REGISTERING'`,
			v.Digest, v.Size, string(files), v.Model, v.Version)
	})
}

const versionColumns = `model, version, state, created_at, created_by, metadata, digest, size, files, checks`

func scanVersion(row interface{ Scan(...any) error }) (*slipway.ModelVersion, error) {
	var v slipway.ModelVersion
	var created, meta, files, checks string
	if err := row.Scan(&v.Model, &v.Version, &v.State, &created, &v.CreatedBy, &meta, &v.Digest, &v.Size, &files, &checks); err != nil {
		return nil, err
	}
	v.CreatedAt = parseTime(created)
	for _, part := range []struct {
		src string
		dst any
	}{{meta, &v.VersionMetadata}, {files, &v.Files}, {checks, &v.Checks}} {
		if err := json.Unmarshal([]byte(part.src), part.dst); err != nil {
			return nil, fmt.Errorf("decode version %s:%d: %w", v.Model, v.Version, err)
		}
	}
	return &v, nil
}

// FindVersion resolves a version number or alias.
func (db *DB) FindVersion(ctx context.Context, model string, ref slipway.VersionRef) (*slipway.ModelVersion, error) {
	if err := modelInProject(ctx, db.r, model); err != nil {
		return nil, err
	}
	var row *sql.Row
	var what string // names the version in errors
	if ref.Alias != "" {
		what = fmt.Sprintf("alias %q of model %q", ref.Alias, model)
		if ref.Alias == "latest" {
			row = db.r.QueryRowContext(ctx, `SELECT `+versionColumns+` FROM model_versions
				WHERE model = ? AND state = 'READY' ORDER BY version DESC LIMIT 1`, model)
		} else {
			row = db.r.QueryRowContext(ctx, `SELECT `+prefixed("v", versionColumns)+` FROM model_versions v
				JOIN aliases a ON a.model = v.model AND a.version = v.version WHERE a.model = ? AND a.alias = ?`, model, ref.Alias)
		}
	} else {
		what = fmt.Sprintf("version %d of model %q", ref.Number, model)
		row = db.r.QueryRowContext(ctx, `SELECT `+versionColumns+` FROM model_versions WHERE model = ? AND version = ?`,
			model, ref.Number)
	}
	v, err := scanVersion(row)
	if err != nil {
		return nil, mapErr(err, what)
	}
	return v, db.fillAliases(ctx, []*slipway.ModelVersion{v})
}

func prefixed(alias, columns string) string {
	parts := strings.Split(columns, ", ")
	for i, p := range parts {
		parts[i] = alias + "." + p
	}
	return strings.Join(parts, ", ")
}

// FindVersions lists a model's versions, newest first.
func (db *DB) FindVersions(ctx context.Context, model string, offset, limit int) ([]*slipway.ModelVersion, int, error) {
	if _, err := db.FindModel(ctx, model); err != nil {
		return nil, 0, err
	}
	var total int
	if err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM model_versions WHERE model = ?`, model).Scan(&total); err != nil {
		return nil, 0, mapErr(err, "versions of "+model)
	}
	out, err := queryAll(ctx, db.r, scanVersion, "versions of "+model, `SELECT `+versionColumns+` FROM model_versions
		WHERE model = ? ORDER BY version DESC LIMIT ? OFFSET ?`, model, limit, offset)
	if err != nil {
		return nil, 0, err
	}
	return out, total, db.fillAliases(ctx, out)
}

func (db *DB) fillAliases(ctx context.Context, vs []*slipway.ModelVersion) error {
	if len(vs) == 0 {
		return nil
	}
	byAlias, err := db.modelAliases(ctx, vs[0].Model)
	if err != nil {
		return err
	}
	for _, v := range vs {
		v.Aliases = []string{}
		for a, n := range byAlias {
			if n == v.Version {
				v.Aliases = append(v.Aliases, a)
			}
		}
		sortStrings(v.Aliases)
	}
	return nil
}

// DeleteStaleRegistering removes versions a crash left in REGISTERING before their files were recorded. Call
// only at startup, before serving.
func (db *DB) DeleteStaleRegistering(ctx context.Context) ([]*slipway.ModelVersion, error) {
	var stale []*slipway.ModelVersion
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if stale, err = queryVersions(ctx, tx, `state = 'REGISTERING' AND digest = ''`); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM model_versions WHERE state = 'REGISTERING' AND digest = ''`)
		return mapErr(err, "registering versions")
	})
	return stale, err
}

// FindRegistering returns the REGISTERING versions whose files are recorded.
func (db *DB) FindRegistering(ctx context.Context) ([]*slipway.ModelVersion, error) {
	var vs []*slipway.ModelVersion
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		vs, err = queryVersions(ctx, tx, `state = 'REGISTERING' AND digest <> ''`)
		return err
	})
	return vs, err
}

func queryVersions(ctx context.Context, tx *sql.Tx, where string) ([]*slipway.ModelVersion, error) {
	return queryAll(ctx, tx, scanVersion, "registering versions", `SELECT `+versionColumns+` FROM model_versions WHERE `+where+` ORDER BY model, version`)
}

// SetAlias points alias at a READY version and appends to its history, atomically.
func (db *DB) SetAlias(ctx context.Context, model, alias string, version int, by string) (*slipway.AliasMove, error) {
	move := &slipway.AliasMove{Model: model, Alias: alias, Version: version, MovedAt: db.now().UTC(), MovedBy: by}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var state string
		err := tx.QueryRowContext(ctx, `SELECT state FROM model_versions WHERE model = ? AND version = ?`, model, version).Scan(&state)
		if err != nil {
			return mapErr(err, fmt.Sprintf("version %d of model %q", version, model))
		}
		if state != string(slipway.VersionReady) {
			return slipway.Errorf(slipway.ECONFLICT, "version %d of model %q is %s: only READY versions can carry an alias", version, model, state)
		}
		var from sql.NullInt64
		err = tx.QueryRowContext(ctx, `SELECT version FROM aliases WHERE model = ? AND alias = ?`, model, alias).Scan(&from)
		if err != nil && err != sql.ErrNoRows {
			return mapErr(err, "alias "+alias)
		}
		if from.Valid {
			f := int(from.Int64)
			move.FromVersion = &f
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO aliases (model, alias, version, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at`,
			model, alias, version, formatTime(move.MovedAt)); err != nil {
			return mapErr(err, "alias "+alias)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO alias_history (model, alias, version, from_version, moved_at, moved_by)
			VALUES (?, ?, ?, ?, ?, ?)`, model, alias, version, from, formatTime(move.MovedAt), by)
		return mapErr(err, "alias history")
	})
	if err != nil {
		return nil, err
	}
	return move, nil
}

// DeleteAlias removes an alias, recording the removal (version null) in its history.
func (db *DB) DeleteAlias(ctx context.Context, model, alias, by string) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		var from int
		if err := tx.QueryRowContext(ctx, `SELECT version FROM aliases WHERE model = ? AND alias = ?`, model, alias).Scan(&from); err != nil {
			return mapErr(err, fmt.Sprintf("alias %q of model %q", alias, model))
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM aliases WHERE model = ? AND alias = ?`, model, alias); err != nil {
			return mapErr(err, "alias "+alias)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO alias_history (model, alias, version, from_version, moved_at, moved_by)
			VALUES (?, ?, NULL, ?, ?, ?)`, model, alias, from, formatTime(db.now()), by)
		return mapErr(err, "alias history")
	})
}

// FindAliasHistory lists an alias's moves, oldest first.
func (db *DB) FindAliasHistory(ctx context.Context, model, alias string) ([]*slipway.AliasMove, error) {
	out, err := queryAll(ctx, db.r, func(rs rowScanner) (*slipway.AliasMove, error) {
		var v, from sql.NullInt64
		var at string
		m := &slipway.AliasMove{Model: model, Alias: alias}
		if err := rs.Scan(&v, &from, &at, &m.MovedBy); err != nil {
			return nil, err
		}
		m.Version = int(v.Int64)
		if from.Valid {
			f := int(from.Int64)
			m.FromVersion = &f
		}
		m.MovedAt = parseTime(at)
		return m, nil
	}, "alias history", `SELECT version, from_version, moved_at, moved_by FROM alias_history
		WHERE model = ? AND alias = ? ORDER BY id`, model, alias)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, slipway.Errorf(slipway.ENOTFOUND, "alias %q of model %q has no history", alias, model)
	}
	return out, nil
}

// ReferencedDigests returns the digests of every stored manifest and of the files they list.
func (db *DB) ReferencedDigests(ctx context.Context) (map[string]bool, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT digest, files FROM model_versions`)
	if err != nil {
		return nil, mapErr(err, "manifests")
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var digest, files string
		if err := rows.Scan(&digest, &files); err != nil {
			return nil, mapErr(err, "manifests")
		}
		out[digest] = true
		var fs []slipway.File
		if err := json.Unmarshal([]byte(files), &fs); err != nil {
			return nil, fmt.Errorf("sqlstore: decode manifest %s: %w", digest, err)
		}
		for _, f := range fs {
			out[f.SHA256] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr(err, "manifests")
	}
	// Batch predictions keep their uploaded inputs, their outputs' parts and their outputs in the same store.
	batch, err := queryAll(ctx, db.r, func(row rowScanner) (string, error) {
		var d string
		return d, row.Scan(&d)
	}, "batch blobs", `SELECT sha256 FROM batch_files UNION SELECT digest FROM batch_parts WHERE digest <> ''
		UNION SELECT output_digest FROM batch_runs WHERE output_digest <> ''`)
	if err != nil {
		return nil, err
	}
	for _, d := range batch {
		out[d] = true
	}
	return out, nil
}

// modelInProject checks that model belongs to the project of ctx (any project without one): versions and
// aliases have no project of their own, they are their model's.
func modelInProject(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, model string) error {
	p, ok := slipway.ProjectFromContext(ctx)
	if !ok {
		return nil
	}
	owner, err := parentProject(ctx, q, "models", model)
	if err != nil {
		return err
	}
	if owner != p {
		return slipway.Errorf(slipway.ENOTFOUND, "model %q not found", model)
	}
	return nil
}
