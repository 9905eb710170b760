package sqlstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

// openAt opens an installation of dialect d (a SQLite file or a PostgreSQL URL at where) migrated up to
// migration upTo (0: all).
func openAt(t *testing.T, d testDialect, where string, upTo int) *DB {
	t.Helper()
	ctx := context.Background()
	var db *DB
	if d.name == "sqlite" {
		w, r, err := openSQLitePools(where, "file:"+where+"?_pragma=foreign_keys(1)&_txlock=immediate", 2)
		if err != nil {
			t.Fatal(err)
		}
		db = &DB{w: w, r: r, dialect: dialectSQLite, now: time.Now, migrateUpTo: upTo}
	} else {
		w, r, err := openPostgresPools(ctx, where, pgLockMetadata, 2)
		if err != nil {
			t.Fatal(err)
		}
		db = &DB{w: w, r: r, dialect: dialectPostgres, now: time.Now, migrateUpTo: upTo}
	}
	db, err := openDB(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// An installation older than projects (schema up to 0016) keeps its data, now in the default project, and
// project-scoped reads see it only from there.
func TestMigrationMovesExistingDataIntoDefault(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d testDialect) {
		ctx := context.Background()
		where := filepath.Join(t.TempDir(), "slipway.db")
		if d.name == "postgres" {
			where = postgresDatabase(t)
		}
		old := openAt(t, d, where, 16)
		now := formatTime(time.Now())
		for _, q := range []string{
			`INSERT INTO models (name, description, tags, created_at, updated_at) VALUES ('churn', '', '{}', '` + now + `', '` + now + `')`,
			`INSERT INTO jobs (name, spec, kind, digest, files, created_at) VALUES ('train', '{}', 'script', 'd', '[]', '` + now + `')`,
			`INSERT INTO job_runs (id, job, state, spec, created_at) VALUES ('jr-1', 'train', 'SUCCEEDED', '{}', '` + now + `')`,
			`INSERT INTO batch_files (id, name, size, sha256, created_at) VALUES ('f-1', 'in.csv', 1, 'x', '` + now + `')`,
			`INSERT INTO tokens (id, name, role, hash, created_at) VALUES ('t1', 'ci', 'editor', 'h1', '` + now + `')`,
		} {
			if _, err := old.w.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		old.Close()

		db := openAt(t, d, where, 0)
		for _, kind := range []string{slipway.KindModel, slipway.KindJob, slipway.KindJobRun, slipway.KindUploadedFile} {
			key := map[string]string{slipway.KindModel: "churn", slipway.KindJob: "train", slipway.KindJobRun: "jr-1", slipway.KindUploadedFile: "f-1"}[kind]
			if p, err := db.ResourceProject(ctx, kind, key); err != nil || p != slipway.DefaultProject {
				t.Errorf("%s %s after the migration: project %q, %v", kind, key, p, err)
			}
		}
		inDefault := slipway.WithProject(ctx, slipway.DefaultProject)
		if m, err := db.FindModel(inDefault, "churn"); err != nil || m.Project != slipway.DefaultProject {
			t.Fatalf("churn in default: %+v %v", m, err)
		}
		if err := db.CreateProject(ctx, &slipway.Project{Name: "risk"}); err != nil {
			t.Fatal(err)
		}
		inRisk := slipway.WithProject(ctx, "risk")
		if _, err := db.FindModel(inRisk, "churn"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("default's model read from risk: %v, want not found", err)
		}
		if _, err := db.FindVersion(inRisk, "churn", slipway.VersionRef{Alias: "latest"}); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("default's model's version read from risk: %v, want not found", err)
		}
		if _, err := db.FindJobRun(inRisk, "jr-1"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("default's run read from risk: %v", err)
		}
		if err := db.DeleteJob(inRisk, "train"); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("default's job deleted from risk: %v", err)
		}
		if tok, err := db.FindTokenByHash(ctx, "h1"); err != nil || tok.Role != slipway.RoleEditor || tok.Projects != nil {
			t.Errorf("an old token: %+v %v", tok, err)
		}

		// New rows go to the project of their context, or their parent's.
		if err := db.CreateModel(inRisk, &slipway.Model{Name: "fraud"}); err != nil {
			t.Fatal(err)
		}
		ms, total, err := db.FindModels(inRisk, slipway.ModelFilter{Limit: 10})
		if err != nil || total != 1 || ms[0].Name != "fraud" || ms[0].Project != "risk" {
			t.Fatalf("models in risk: %d %+v %v", total, ms, err)
		}
		all, total, err := db.FindModels(ctx, slipway.ModelFilter{Limit: 10})
		if err != nil || total != 2 || len(all) != 2 {
			t.Fatalf("models without a project (the server's own reads): %d %v", total, err)
		}
		// A push from risk to default's model name is refused as not found, and creates nothing.
		if err := db.CreateVersion(inRisk, &slipway.ModelVersion{Model: "churn"}); slipway.ErrorCode(err) != slipway.ENOTFOUND {
			t.Errorf("push to default's model from risk: %v, want not found", err)
		}
		if err := db.CreateJob(inRisk, &slipway.Job{JobSpec: slipway.JobSpec{Name: "score"}}); err != nil {
			t.Fatal(err)
		}
		run := &slipway.JobRun{ID: "jr-2", Job: "score", State: slipway.RunAccepted}
		if err := db.CreateJobRun(ctx, run); err != nil || run.Project != "risk" {
			t.Fatalf("a run started without a project (a schedule): project %q, %v; want its job's", run.Project, err)
		}
		tok := &slipway.Token{ID: "t2", Name: "risk-ci", Projects: map[string]slipway.Role{"risk": slipway.RoleViewer}, CreatedAt: time.Now()}
		if err := db.CreateToken(ctx, tok, "h2"); err != nil {
			t.Fatal(err)
		}
		if got, err := db.FindTokenByHash(ctx, "h2"); err != nil || got.Role != "" || got.Projects["risk"] != slipway.RoleViewer || !got.Scoped() {
			t.Errorf("a project token read back: %+v %v", got, err)
		}
		ps, err := db.FindProjects(ctx)
		if err != nil || len(ps) != 2 || ps[0].Name != "default" || ps[1].Name != "risk" {
			t.Errorf("projects: %+v %v", ps, err)
		}
		if err := db.CreateProject(ctx, &slipway.Project{Name: "default"}); slipway.ErrorCode(err) != slipway.ECONFLICT {
			t.Errorf("create default again: %v", err)
		}
	})
}
