package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/slipway-ml/slipway"
)

var _ slipway.MonitoringStore = (*DB)(nil)

// PutBaseline stores (or replaces) the baseline profile of a model version.
func (db *DB) PutBaseline(ctx context.Context, b *slipway.Baseline) error {
	profile, err := json.Marshal(b.Profile)
	if err != nil {
		return fmt.Errorf("sqlstore: encode baseline profile: %w", err)
	}
	ignored, _ := json.Marshal(monitorStrings(b.Ignored))
	_, err = db.w.ExecContext(ctx, `INSERT INTO baselines (model, version, format, ignored, profile, created_at, created_by)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (model, version) DO UPDATE SET format = excluded.format, ignored = excluded.ignored,
			profile = excluded.profile, created_at = excluded.created_at, created_by = excluded.created_by`,
		b.Model, b.Version, b.Format, string(ignored), string(profile), formatTime(b.CreatedAt), b.CreatedBy)
	return mapErr(err, fmt.Sprintf("baseline of %s version %d", b.Model, b.Version))
}

func monitorStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// FindBaseline returns the baseline of a model version (ENOTFOUND when it has none).
func (db *DB) FindBaseline(ctx context.Context, model string, version int) (*slipway.Baseline, error) {
	var b slipway.Baseline
	var ignored, profile, created string
	err := db.r.QueryRowContext(ctx, `SELECT model, version, format, ignored, profile, created_at, created_by
		FROM baselines WHERE model = ? AND version = ?`, model, version).
		Scan(&b.Model, &b.Version, &b.Format, &ignored, &profile, &created, &b.CreatedBy)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("baseline of %s version %d", model, version))
	}
	if err := json.Unmarshal([]byte(ignored), &b.Ignored); err != nil {
		return nil, fmt.Errorf("sqlstore: decode baseline columns of %s:%d: %w", model, version, err)
	}
	if err := json.Unmarshal([]byte(profile), &b.Profile); err != nil {
		return nil, fmt.Errorf("sqlstore: decode baseline profile of %s:%d: %w", model, version, err)
	}
	b.CreatedAt = parseTime(created)
	return &b, nil
}

// FindSettings returns a deployment's monitoring settings (ENOTFOUND when none were stored).
func (db *DB) FindSettings(ctx context.Context, deployment string) (*slipway.MonitoringSettings, error) {
	var raw string
	err := db.r.QueryRowContext(ctx, `SELECT settings FROM monitor_settings WHERE deployment = ?`, deployment).Scan(&raw)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("monitoring settings of %q", deployment))
	}
	var s slipway.MonitoringSettings
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return nil, fmt.Errorf("sqlstore: decode monitoring settings of %s: %w", deployment, err)
	}
	return &s, nil
}

// PutSettings stores a deployment's monitoring settings (ECONFLICT... when the deployment does not exist: the
// foreign key refuses it, reported as ENOTFOUND).
func (db *DB) PutSettings(ctx context.Context, deployment string, s *slipway.MonitoringSettings) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("sqlstore: encode monitoring settings: %w", err)
	}
	_, err = db.w.ExecContext(ctx, `INSERT INTO monitor_settings (deployment, settings, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (deployment) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at`,
		deployment, string(raw), formatTime(db.now()))
	return mapErr(err, fmt.Sprintf("monitoring settings of deployment %q", deployment))
}

// ruleSpec is the part of a rule stored as JSON.
type ruleSpec struct {
	Metric    string               `json:"metric"`
	Op        string               `json:"op"`
	Threshold float64              `json:"threshold"`
	Window    slipway.Duration     `json:"window"`
	Webhook   string               `json:"webhook,omitempty"`
	Action    *slipway.AlertAction `json:"action,omitempty"`
}

// CreateAlertRule inserts r (ECONFLICT when the deployment already has a rule of that name).
func (db *DB) CreateAlertRule(ctx context.Context, r *slipway.AlertRule) error {
	sp := ruleSpec{Metric: r.Metric, Op: r.Op, Threshold: r.Threshold, Window: r.Window, Action: r.Action}
	secret := ""
	if r.Webhook != nil {
		sp.Webhook, secret = r.Webhook.URL, r.Webhook.Secret
	}
	spec, _ := json.Marshal(sp)
	_, err := db.w.ExecContext(ctx, `INSERT INTO alert_rules (id, deployment, name, spec, secret, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, r.ID, r.Deployment, r.Name, string(spec), secret, r.State, formatTime(r.CreatedAt))
	return mapErr(err, fmt.Sprintf("alert rule %q of deployment %q", r.Name, r.Deployment))
}

// FindAlertRules lists the rules of a deployment ("" = all), by name. Secrets are included: the caller hides them.
func (db *DB) FindAlertRules(ctx context.Context, deployment string) ([]*slipway.AlertRule, error) {
	q := `SELECT id, deployment, name, spec, secret, state, value, since, last_evaluated, created_at FROM alert_rules`
	var args []any
	if deployment != "" {
		q += ` WHERE deployment = ?`
		args = append(args, deployment)
	}
	return queryAll(ctx, db.r, scanAlertRule, "alert rules", q+` ORDER BY deployment, name`, args...)
}

func scanAlertRule(rs rowScanner) (*slipway.AlertRule, error) {
	var r slipway.AlertRule
	var spec, secret, created string
	var value sql.NullFloat64
	var since, evaluated sql.NullString
	if err := rs.Scan(&r.ID, &r.Deployment, &r.Name, &spec, &secret, &r.State, &value, &since, &evaluated, &created); err != nil {
		return nil, err
	}
	var sp ruleSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		return nil, fmt.Errorf("decode alert rule %s: %w", r.ID, err)
	}
	r.Metric, r.Op, r.Threshold, r.Window, r.Action = sp.Metric, sp.Op, sp.Threshold, sp.Window, sp.Action
	if sp.Webhook != "" {
		r.Webhook = &slipway.Webhook{URL: sp.Webhook, Secret: secret, HasSecret: secret != ""}
	}
	if value.Valid {
		r.Value = &value.Float64
	}
	r.Since, r.LastEvaluated = parseNullTime(since), parseNullTime(evaluated)
	r.CreatedAt = parseTime(created)
	return &r, nil
}

// DeleteAlertRule deletes a rule and its history.
func (db *DB) DeleteAlertRule(ctx context.Context, deployment, id string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM alert_rules WHERE deployment = ? AND id = ?`, deployment, id)
	return affectedOne(res, err, fmt.Sprintf("alert rule %q of deployment %q", id, deployment))
}

// RecordAlertEvaluation stores the rule's state and, for a transition, appends ev to the history.
func (db *DB) RecordAlertEvaluation(ctx context.Context, r *slipway.AlertRule, ev *slipway.AlertEvent) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		var since, evaluated any
		if r.Since != nil {
			since = formatTime(*r.Since)
		}
		if r.LastEvaluated != nil {
			evaluated = formatTime(*r.LastEvaluated)
		}
		res, err := tx.ExecContext(ctx, `UPDATE alert_rules SET state = ?, value = ?, since = ?, last_evaluated = ? WHERE id = ?`,
			r.State, nullFloat(r.Value), since, evaluated, r.ID)
		if err := affectedOne(res, err, fmt.Sprintf("alert rule %q", r.ID)); err != nil {
			return err
		}
		if ev == nil {
			return nil
		}
		err = tx.QueryRowContext(ctx, `INSERT INTO alert_events (rule_id, deployment, rule, state, value, threshold, message, at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, ev.RuleID, ev.Deployment, ev.Rule, ev.State, nullFloat(ev.Value), ev.Threshold,
			ev.Message, formatTime(ev.Time)).Scan(&ev.ID)
		return mapErr(err, "alert event")
	})
}

func nullFloat(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

// FindAlertEvents returns the newest transitions of a deployment's alerts first.
func (db *DB) FindAlertEvents(ctx context.Context, deployment string, limit int) ([]*slipway.AlertEvent, error) {
	return queryAll(ctx, db.r, func(rs rowScanner) (*slipway.AlertEvent, error) {
		var e slipway.AlertEvent
		var value sql.NullFloat64
		var at string
		if err := rs.Scan(&e.ID, &e.RuleID, &e.Deployment, &e.Rule, &e.State, &value, &e.Threshold, &e.Message, &at); err != nil {
			return nil, err
		}
		if value.Valid {
			e.Value = &value.Float64
		}
		e.Time = parseTime(at)
		return &e, nil
	}, "alert events", `SELECT id, rule_id, deployment, rule, state, value, threshold, message, at
		FROM alert_events WHERE deployment = ? ORDER BY id DESC LIMIT ?`, deployment, limit)
}
