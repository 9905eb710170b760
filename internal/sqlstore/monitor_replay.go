package sqlstore

import (
	"context"
	"fmt"

	"github.com/slipway-ml/slipway"
)

// CountCaptures counts the captures of p's window (and version, when given): a replay's total.
func (db *MonitorDB) CountCaptures(ctx context.Context, p slipway.CapturePage) (int64, error) {
	q := `SELECT COUNT(*) FROM captures WHERE deployment = ? AND ts >= ? AND ts < ?`
	args := []any{p.Deployment, ms(p.From), ms(p.To)}
	if p.Version > 0 {
		q += ` AND model_version = ?`
		args = append(args, p.Version)
	}
	var n int64
	if err := db.r.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: count captures: %w", err)
	}
	return n, nil
}
