package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
)

// InsertShadowPairs appends shadow pairs in one transaction.
func (db *MonitorDB) InsertShadowPairs(ctx context.Context, ps []*slipway.ShadowPair) error {
	rows := make([][]any, len(ps))
	for i, p := range ps {
		rows[i] = []any{p.Deployment, p.RequestID, ms(p.Time), p.LiveVersion, p.ShadowVersion, p.Rows,
			nonNilBytes(p.LiveOutputs), nonNilBytes(p.ShadowOutputs), p.LiveError, p.ShadowError, p.LiveMS, p.ShadowMS, nonNilBytes(p.Features)}
	}
	return db.batch(ctx, func(tx *sql.Tx) error {
		return insertRows(ctx, tx, "shadow_pairs", "deployment, request_id, ts, live_version, shadow_version, rows, "+
			"live_outputs, shadow_outputs, live_error, shadow_error, live_ms, shadow_ms, features", 13, rows)
	})
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ScanShadowPairs streams the shadow pairs of a deployment in [from, to), oldest first.
func (db *MonitorDB) ScanShadowPairs(ctx context.Context, deployment string, from, to time.Time, fn func(*slipway.ShadowPair) error) error {
	rows, err := db.r.QueryContext(ctx, `SELECT id, request_id, ts, live_version, shadow_version, rows, live_outputs, shadow_outputs,
			live_error, shadow_error, live_ms, shadow_ms, features
		FROM shadow_pairs WHERE deployment = ? AND ts >= ? AND ts < ? ORDER BY ts, id`, deployment, ms(from), ms(to))
	if err != nil {
		return fmt.Errorf("sqlstore: scan shadow pairs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		p := slipway.ShadowPair{Deployment: deployment}
		var ts int64
		if err := rows.Scan(&p.ID, &p.RequestID, &ts, &p.LiveVersion, &p.ShadowVersion, &p.Rows, &p.LiveOutputs, &p.ShadowOutputs,
			&p.LiveError, &p.ShadowError, &p.LiveMS, &p.ShadowMS, &p.Features); err != nil {
			return fmt.Errorf("sqlstore: scan shadow pairs: %w", err)
		}
		p.Time = fromMS(ts)
		if err := fn(&p); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlstore: scan shadow pairs: %w", err)
	}
	return nil
}

// PageCaptures returns one page of captures after the cursor (time, id), oldest first, each with its feedback.
// The page is read in one statement and its feedback in another, so no read stays open between pages: an export
// of any length holds one page in memory and never keeps a long read transaction on the database.
func (db *MonitorDB) PageCaptures(ctx context.Context, p slipway.CapturePage) ([]slipway.LabelledCapture, error) {
	// The index range starts at the cursor's time (not at from: each page would scan every row before it);
	// rows of that same millisecond are told apart by id.
	q := `SELECT id, request_id, model_version, ts, rows, protocol, inputs, outputs, latency_ms, holdout FROM captures
		WHERE deployment = ? AND ts >= ? AND ts < ? AND (ts > ? OR id > ?)`
	start, after := ms(p.From), ms(p.From)-1
	if !p.AfterTime.IsZero() {
		start, after = max(start, ms(p.AfterTime)), ms(p.AfterTime)
	}
	args := []any{p.Deployment, start, ms(p.To), after, p.AfterID}
	if p.Version > 0 {
		q += ` AND model_version = ?`
		args = append(args, p.Version)
	}
	q += ` ORDER BY ts, id LIMIT ?`
	args = append(args, p.Limit)
	page, err := queryAll(ctx, db.r, func(r rowScanner) (slipway.LabelledCapture, error) {
		c := slipway.Capture{Deployment: p.Deployment}
		var ts int64
		err := r.Scan(&c.ID, &c.RequestID, &c.ModelVersion, &ts, &c.Rows, &c.Protocol, &c.Inputs, &c.Outputs, &c.LatencyMS, &c.Holdout)
		c.Time = fromMS(ts)
		return slipway.LabelledCapture{Capture: &c}, err
	}, "page captures", q, args...)
	if err != nil || len(page) == 0 {
		return page, err
	}
	return page, db.attachFeedback(ctx, p.Deployment, page)
}

// attachFeedback reads the feedback of a page's requests and hangs it on the captures.
func (db *MonitorDB) attachFeedback(ctx context.Context, deployment string, page []slipway.LabelledCapture) error {
	byID := map[string][]int{}
	args := []any{deployment}
	for i, lc := range page {
		if _, seen := byID[lc.Capture.RequestID]; !seen {
			args = append(args, lc.Capture.RequestID)
		}
		byID[lc.Capture.RequestID] = append(byID[lc.Capture.RequestID], i)
	}
	// By the primary key (deployment, request_id, row): the rid column of feedback has no index of its own.
	rows, err := db.r.QueryContext(ctx, `SELECT request_id, row, label, value, ts, received_at FROM feedback
		WHERE deployment = ? AND request_id IN (?`+strings.Repeat(", ?", len(args)-2)+`) ORDER BY request_id, row`, args...)
	if err != nil {
		return fmt.Errorf("sqlstore: read the feedback of captures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		f := slipway.Feedback{Deployment: deployment}
		var label sql.NullString
		var value sql.NullFloat64
		var ts, recv int64
		if err := rows.Scan(&f.RequestID, &f.Row, &label, &value, &ts, &recv); err != nil {
			return fmt.Errorf("sqlstore: read the feedback of captures: %w", err)
		}
		f.Time, f.ReceivedAt = fromMS(ts), fromMS(recv)
		if label.Valid {
			f.Label = &label.String
		}
		if value.Valid {
			f.Value = &value.Float64
		}
		for _, i := range byID[f.RequestID] {
			page[i].Feedback = append(page[i].Feedback, &f)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlstore: read the feedback of captures: %w", err)
	}
	return nil
}
