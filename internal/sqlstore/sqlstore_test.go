package sqlstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func readyVersion(t *testing.T, db *DB, model string) *slipway.ModelVersion {
	t.Helper()
	ctx := context.Background()
	v := &slipway.ModelVersion{Model: model, VersionMetadata: slipway.VersionMetadata{Runtime: "python"}}
	if err := db.CreateVersion(ctx, v); err != nil {
		t.Fatal(err)
	}
	v.State = slipway.VersionReady
	v.Digest = "d" + time.Now().String()
	v.Files = []slipway.File{{Path: "score.py", Size: 3, SHA256: "abc"}}
	if err := db.FinishVersion(ctx, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrationsIdempotent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		inst := td.fresh(t)
		for i := 0; i < 2; i++ {
			db, err := inst.open(context.Background())
			if err != nil {
				t.Fatalf("open #%d: %v", i, err)
			}
			db.Close()
		}
	})
}

func TestVersionsNumberedAndAliases(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		v1 := readyVersion(t, db, "churn")
		v2 := readyVersion(t, db, "churn")
		if v1.Version != 1 || v2.Version != 2 {
			t.Fatalf("versions %d, %d; want 1, 2", v1.Version, v2.Version)
		}
		if _, err := db.SetAlias(ctx, "churn", "champion", 1, "alice"); err != nil {
			t.Fatal(err)
		}
		move, err := db.SetAlias(ctx, "churn", "champion", 2, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if move.FromVersion == nil || *move.FromVersion != 1 {
			t.Fatalf("from version = %v, want 1", move.FromVersion)
		}
		got, err := db.FindVersion(ctx, "churn", slipway.VersionRef{Alias: "champion"})
		if err != nil || got.Version != 2 {
			t.Fatalf("champion -> %+v, %v; want version 2", got, err)
		}
		latest, err := db.FindVersion(ctx, "churn", slipway.VersionRef{Alias: "latest"})
		if err != nil || latest.Version != 2 {
			t.Fatalf("latest -> %v, %v", latest, err)
		}
		hist, err := db.FindAliasHistory(ctx, "churn", "champion")
		if err != nil || len(hist) != 2 || hist[1].MovedBy != "bob" {
			t.Fatalf("history %+v, %v", hist, err)
		}
		m, err := db.FindModel(ctx, "churn")
		if err != nil || m.Aliases["champion"] != 2 || m.LatestVersion != 2 {
			t.Fatalf("model %+v, %v", m, err)
		}
	})
}

func TestErrorsMapToCodes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		readyVersion(t, db, "churn")
		pending := &slipway.ModelVersion{Model: "churn", VersionMetadata: slipway.VersionMetadata{Runtime: "python"}}
		if err := db.CreateVersion(ctx, pending); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateDeployment(ctx, &slipway.Deployment{Name: "d", State: slipway.DeploymentActive, Model: "churn", Version: 1,
			Replicas: 1, TimeoutMS: 1, MaxQueue: 1}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			err  error
			want string
		}{
			{"unknown model", func() error { _, err := db.FindModel(ctx, "nope"); return err }(), slipway.ENOTFOUND},
			{"unknown version", func() error { _, err := db.FindVersion(ctx, "churn", slipway.VersionRef{Number: 9}); return err }(), slipway.ENOTFOUND},
			{"unknown alias", func() error { _, err := db.FindVersion(ctx, "churn", slipway.VersionRef{Alias: "x"}); return err }(), slipway.ENOTFOUND},
			{"alias to missing version", func() error { _, err := db.SetAlias(ctx, "churn", "a", 7, ""); return err }(), slipway.ENOTFOUND},
			{"alias to registering version", func() error { _, err := db.SetAlias(ctx, "churn", "a", pending.Version, ""); return err }(), slipway.ECONFLICT},
			{"duplicate model", db.CreateModel(ctx, &slipway.Model{Name: "churn"}), slipway.ECONFLICT},
			{"revoke unknown token", db.RevokeToken(ctx, "nope"), slipway.ENOTFOUND},
			{"delete unknown alias", db.DeleteAlias(ctx, "churn", "nope", ""), slipway.ENOTFOUND},
			{"delete a model a deployment uses", db.DeleteModel(ctx, "churn"), slipway.ECONFLICT},
			{"duplicate deployment", db.CreateDeployment(ctx, &slipway.Deployment{Name: "d", State: slipway.DeploymentActive, Model: "churn", Version: 1,
				Replicas: 1, TimeoutMS: 1, MaxQueue: 1}), slipway.ECONFLICT},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if got := slipway.ErrorCode(tc.err); got != tc.want {
					t.Fatalf("code %s (%v), want %s", got, tc.err, tc.want)
				}
			})
		}
	})
}

func TestStaleRegisteringRemoved(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		readyVersion(t, db, "churn")
		v := &slipway.ModelVersion{Model: "churn", VersionMetadata: slipway.VersionMetadata{Runtime: "python"}}
		if err := db.CreateVersion(ctx, v); err != nil {
			t.Fatal(err)
		}
		stale, err := db.DeleteStaleRegistering(ctx)
		if err != nil || len(stale) != 1 || stale[0].Version != 2 {
			t.Fatalf("stale %v, %v", stale, err)
		}
		next := readyVersion(t, db, "churn")
		if next.Version != 2 {
			t.Fatalf("version after recovery = %d, want 2 (the interrupted number is free again)", next.Version)
		}
	})
}

func TestFindModelsFilters(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		for _, m := range []*slipway.Model{
			{Name: "churn", Tags: map[string]string{"team": "risk"}},
			{Name: "churn-onnx", Tags: map[string]string{"team": "growth"}},
			{Name: "fraud", Tags: map[string]string{"team": "risk", "pii": "yes"}},
		} {
			if err := db.CreateModel(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			f     slipway.ModelFilter
			want  []string
			total int
		}{
			{slipway.ModelFilter{Limit: 10}, []string{"churn", "churn-onnx", "fraud"}, 3},
			{slipway.ModelFilter{Name: "churn", Limit: 10}, []string{"churn", "churn-onnx"}, 2},
			{slipway.ModelFilter{Name: "CHURN", Limit: 10}, []string{"churn", "churn-onnx"}, 2},
			{slipway.ModelFilter{Tag: "team=risk", Limit: 10}, []string{"churn", "fraud"}, 2},
			{slipway.ModelFilter{Tag: "pii", Limit: 10}, []string{"fraud"}, 1},
			{slipway.ModelFilter{Limit: 1, Offset: 1}, []string{"churn-onnx"}, 3},
			{slipway.ModelFilter{Name: "%", Limit: 10}, nil, 0},
		}
		for _, tc := range tests {
			ms, total, err := db.FindModels(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			if total != tc.total || len(names) != len(tc.want) || (len(names) > 0 && names[0] != tc.want[0]) {
				t.Errorf("%+v: got %v (total %d), want %v (total %d)", tc.f, names, total, tc.want, tc.total)
			}
		}
	})
}

// Concurrent registrations of one model must get distinct, gap-free version numbers.
func TestConcurrentCreateVersion(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		const n = 20
		var wg sync.WaitGroup
		got := make(chan int, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := &slipway.ModelVersion{Model: "m", VersionMetadata: slipway.VersionMetadata{Runtime: "onnx"}}
				if err := db.CreateVersion(ctx, v); err != nil {
					t.Error(err)
					return
				}
				got <- v.Version
			}()
		}
		wg.Wait()
		close(got)
		seen := map[int]bool{}
		for v := range got {
			if seen[v] {
				t.Fatalf("version %d allocated twice", v)
			}
			seen[v] = true
		}
		for i := 1; i <= n; i++ {
			if !seen[i] {
				t.Fatalf("version %d missing: %v", i, seen)
			}
		}
	})
}

func TestInstallationIDIsStable(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		ctx := context.Background()
		inst := td.fresh(t)
		var ids []string
		for range 2 {
			db, err := inst.open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				id, err := db.InstallationID(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, id)
			}
			db.Close()
		}
		other, err := openTestDB(t, td).InstallationID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ids[0] == "" || ids[1] != ids[0] || ids[2] != ids[0] || ids[3] != ids[0] || other == ids[0] {
			t.Fatalf("ids across calls and reopenings %v, another database's %q", ids, other)
		}
	})
}
