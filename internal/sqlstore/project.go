package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/slipway-ml/slipway"
)

var _ slipway.ProjectStore = (*DB)(nil)

// inProject is the condition that limits a project-owned table's rows (column col, possibly qualified) to the
// project of ctx: every find, list, update and delete of such a table goes through it, so a call scoped to one
// project cannot read or change another's rows (they are ENOTFOUND). A context without a project (the
// server's own work) sees every row.
func inProject(ctx context.Context, col string) (string, []any) {
	if p, ok := slipway.ProjectFromContext(ctx); ok {
		return col + " = ?", []any{p}
	}
	return "1=1", nil
}

// CreateProject inserts p; ECONFLICT when the name is taken.
func (db *DB) CreateProject(ctx context.Context, p *slipway.Project) error {
	if p.Name == slipway.DefaultProject {
		return slipway.Errorf(slipway.ECONFLICT, "project %q already exists", p.Name)
	}
	p.CreatedAt = db.now().UTC()
	_, err := db.w.ExecContext(ctx, `INSERT INTO projects (name, description, created_at, created_by) VALUES (?, ?, ?, ?)`,
		p.Name, p.Description, formatTime(p.CreatedAt), p.CreatedBy)
	return mapErr(err, fmt.Sprintf("project %q", p.Name))
}

const projectColumns = `name, description, created_at, created_by`

func scanProject(row rowScanner) (*slipway.Project, error) {
	var p slipway.Project
	var created string
	if err := row.Scan(&p.Name, &p.Description, &created, &p.CreatedBy); err != nil {
		return nil, err
	}
	p.CreatedAt = parseTime(created)
	return &p, nil
}

// FindProject returns one project.
func (db *DB) FindProject(ctx context.Context, name string) (*slipway.Project, error) {
	if name == slipway.DefaultProject {
		return defaultProject(), nil
	}
	p, err := scanProject(db.r.QueryRowContext(ctx, `SELECT `+projectColumns+` FROM projects WHERE name = ?`, name))
	return p, mapErr(err, fmt.Sprintf("project %q", name))
}

// defaultProject has no row: it always exists.
func defaultProject() *slipway.Project {
	return &slipway.Project{Name: slipway.DefaultProject, Description: "the project of every call that names none"}
}

// FindProjects lists every project by name.
func (db *DB) FindProjects(ctx context.Context) ([]*slipway.Project, error) {
	ps, err := queryAll(ctx, db.r, scanProject, "projects", `SELECT `+projectColumns+` FROM projects ORDER BY name`)
	if err != nil {
		return nil, err
	}
	i, _ := slices.BinarySearchFunc(ps, slipway.DefaultProject, func(p *slipway.Project, name string) int { return strings.Compare(p.Name, name) })
	return slices.Insert(ps, i, defaultProject()), nil
}

// resourceTables says where each kind of project-owned resource is, and its key column.
var resourceTables = map[string]struct{ table, key string }{
	slipway.KindModel:        {"models", "name"},
	slipway.KindDeployment:   {"deployments", "name"},
	slipway.KindJob:          {"jobs", "name"},
	slipway.KindJobRun:       {"job_runs", "id"},
	slipway.KindPipeline:     {"pipelines", "name"},
	slipway.KindPipelineRun:  {"pipeline_runs", "id"},
	slipway.KindSchedule:     {"schedules", "name"},
	slipway.KindBatch:        {"batch_runs", "id"},
	slipway.KindUploadedFile: {"batch_files", "id"},
}

// ResourceProject is the project of one resource, whatever the project of ctx.
func (db *DB) ResourceProject(ctx context.Context, kind, key string) (string, error) {
	t, ok := resourceTables[kind]
	if !ok {
		return "", fmt.Errorf("sqlstore: no project-owned resource of kind %q", kind)
	}
	var p string
	err := db.r.QueryRowContext(ctx, `SELECT project FROM `+t.table+` WHERE `+t.key+` = ?`, key).Scan(&p)
	return p, mapErr(err, fmt.Sprintf("%s %q", kind, key))
}

// parentProject is the project of the row of table whose key column is key ("" when there is none).
func parentProject(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, table, key string) (string, error) {
	var p string
	err := q.QueryRowContext(ctx, `SELECT project FROM `+table+` WHERE `+resourceKey(table)+` = ?`, key).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return p, mapErr(err, table+" "+key)
}

func resourceKey(table string) string {
	for _, t := range resourceTables {
		if t.table == table {
			return t.key
		}
	}
	return "name"
}
