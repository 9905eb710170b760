package sqlstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/slipway-ml/slipway"
)

// Listing batch runs pages newest first; no limit lists them all.
func TestFindBatchRunsPages(t *testing.T) {
	forEachDialect(t, func(t *testing.T, td testDialect) {
		db := openTestDB(t, td)
		ctx := context.Background()
		for i := range 3 {
			r := &slipway.BatchRun{ID: fmt.Sprint("b", i), State: slipway.BatchAccepted, Model: "m", Version: 1, RowsTotal: -1}
			if err := db.CreateBatchRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		accepted := slipway.BatchAccepted
		tests := []struct {
			f     slipway.BatchFilter
			want  int
			first string
		}{
			{slipway.BatchFilter{}, 3, "b2"},
			{slipway.BatchFilter{Limit: 1, Offset: 1}, 1, "b1"},
			{slipway.BatchFilter{State: &accepted, Offset: 2}, 1, "b0"},
		}
		for _, tc := range tests {
			runs, total, err := db.FindBatchRuns(ctx, tc.f)
			if err != nil || total != 3 || len(runs) != tc.want || runs[0].ID != tc.first {
				t.Errorf("%+v: %d runs (total %d), %v; want %d from %s", tc.f, len(runs), total, err, tc.want, tc.first)
			}
		}
	})
}
