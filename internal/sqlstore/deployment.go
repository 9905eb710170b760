package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/slipway-ml/slipway"
)

var _ slipway.DeploymentStore = (*DB)(nil)

const deploymentColumns = `name, state, reason, model, version, alias, follow_alias, replicas, batching, timeout_ms, max_queue, env, canary, shadow, created_at, updated_at`

// CreateDeployment inserts d; ECONFLICT when the name is taken.
func (db *DB) CreateDeployment(ctx context.Context, d *slipway.Deployment) error {
	now := db.now().UTC()
	d.CreatedAt, d.UpdatedAt = now, now
	batching, _ := json.Marshal(d.Batching)
	env, _ := json.Marshal(nonNilTags(d.Env))
	canary, _ := json.Marshal(d.Canary)
	shadow, _ := json.Marshal(d.Shadow)
	_, err := db.w.ExecContext(ctx, `INSERT INTO deployments (`+deploymentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.Name, string(d.State), d.Reason, d.Model, d.Version, d.Alias, d.FollowAlias, d.Replicas, string(batching),
		d.TimeoutMS, d.MaxQueue, string(env), string(canary), string(shadow), formatTime(now), formatTime(now))
	return mapErr(err, fmt.Sprintf("deployment %q", d.Name))
}

func scanDeployment(row interface{ Scan(...any) error }) (*slipway.Deployment, error) {
	var d slipway.Deployment
	var batching, env, canary, shadow, created, updated string
	if err := row.Scan(&d.Name, &d.State, &d.Reason, &d.Model, &d.Version, &d.Alias, &d.FollowAlias, &d.Replicas,
		&batching, &d.TimeoutMS, &d.MaxQueue, &env, &canary, &shadow, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(canary), &d.Canary); err != nil {
		return nil, fmt.Errorf("decode canary of %s: %w", d.Name, err)
	}
	if err := json.Unmarshal([]byte(shadow), &d.Shadow); err != nil {
		return nil, fmt.Errorf("decode shadow of %s: %w", d.Name, err)
	}
	if err := json.Unmarshal([]byte(batching), &d.Batching); err != nil {
		return nil, fmt.Errorf("decode batching of %s: %w", d.Name, err)
	}
	if err := json.Unmarshal([]byte(env), &d.Env); err != nil {
		return nil, fmt.Errorf("decode env of %s: %w", d.Name, err)
	}
	d.CreatedAt, d.UpdatedAt = parseTime(created), parseTime(updated)
	return &d, nil
}

// FindDeployment returns one deployment.
func (db *DB) FindDeployment(ctx context.Context, name string) (*slipway.Deployment, error) {
	d, err := scanDeployment(db.r.QueryRowContext(ctx, `SELECT `+deploymentColumns+` FROM deployments WHERE name = ?`, name))
	return d, mapErr(err, fmt.Sprintf("deployment %q", name))
}

// FindDeployments lists every deployment by name.
func (db *DB) FindDeployments(ctx context.Context) ([]*slipway.Deployment, error) {
	return queryAll(ctx, db.r, scanDeployment, "deployments", `SELECT `+deploymentColumns+` FROM deployments ORDER BY name`)
}

// UpdateDeployment stores d's desired state (everything but name and created_at).
func (db *DB) UpdateDeployment(ctx context.Context, d *slipway.Deployment) error {
	d.UpdatedAt = db.now().UTC()
	batching, _ := json.Marshal(d.Batching)
	env, _ := json.Marshal(nonNilTags(d.Env))
	canary, _ := json.Marshal(d.Canary)
	shadow, _ := json.Marshal(d.Shadow)
	res, err := db.w.ExecContext(ctx, `UPDATE deployments SET state = ?, reason = ?, model = ?, version = ?, alias = ?,
		follow_alias = ?, replicas = ?, batching = ?, timeout_ms = ?, max_queue = ?, env = ?, canary = ?, shadow = ?,
		updated_at = ? WHERE name = ?`,
		string(d.State), d.Reason, d.Model, d.Version, d.Alias, d.FollowAlias, d.Replicas, string(batching), d.TimeoutMS,
		d.MaxQueue, string(env), string(canary), string(shadow), formatTime(d.UpdatedAt), d.Name)
	return affectedOne(res, err, fmt.Sprintf("deployment %q", d.Name))
}

// SetDeploymentState moves a deployment from → to with its reason (ECONFLICT when it is no longer in from).
func (db *DB) SetDeploymentState(ctx context.Context, name string, from, to slipway.DeploymentState, reason string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE deployments SET state = ?, reason = ?, updated_at = ? WHERE name = ? AND state = ?`,
		string(to), reason, formatTime(db.now()), name, string(from))
	if err := affectedOne(res, err, fmt.Sprintf("deployment %q", name)); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		return err
	}
	if _, err := db.FindDeployment(ctx, name); err != nil {
		return err // gone
	}
	return slipway.Errorf(slipway.ECONFLICT, "deployment %s is no longer %s", name, from)
}

// DeleteDeployment removes a deployment.
func (db *DB) DeleteDeployment(ctx context.Context, name string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM deployments WHERE name = ?`, name)
	return affectedOne(res, err, fmt.Sprintf("deployment %q", name))
}
