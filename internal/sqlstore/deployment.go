package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/slipway-ml/slipway"
)

var _ slipway.DeploymentStore = (*DB)(nil)

const deploymentColumns = `name, state, reason, model, version, alias, follow_alias, replicas, batching, timeout_ms, max_queue, env, canary, shadow, autoscaling, load_mode, isolation, resources, engine, created_at, updated_at, revision, project, holdout`

var deploymentTable = byName[slipway.Deployment]{table: "deployments", columns: deploymentColumns, kind: "deployment", scan: scanDeployment}

// CreateDeployment inserts d; ECONFLICT when the name is taken.
func (db *DB) CreateDeployment(ctx context.Context, d *slipway.Deployment) error {
	now := db.now().UTC()
	d.CreatedAt, d.UpdatedAt = now, now
	j, err := encodeDeployment(d)
	if err != nil {
		return err
	}
	d.Project = slipway.ProjectForCreate(ctx)
	_, err = db.w.ExecContext(ctx, `INSERT INTO deployments (`+deploymentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`,
		d.Name, string(d.State), d.Reason, d.Model, d.Version, d.Alias, d.FollowAlias, d.Replicas, j.batching,
		d.TimeoutMS, d.MaxQueue, j.env, j.canary, j.shadow, j.autoscaling, d.Load, d.Isolation, j.resources, d.Engine, formatTime(now), formatTime(now), d.Project, j.holdout)
	if err != nil {
		return mapErr(err, fmt.Sprintf("deployment %q", d.Name))
	}
	d.Revision = 1
	return nil
}

// deploymentJSON holds the columns of a deployment that are stored as JSON.
type deploymentJSON struct{ batching, env, canary, shadow, autoscaling, resources, holdout string }

func encodeDeployment(d *slipway.Deployment) (deploymentJSON, error) {
	var j deploymentJSON
	for _, c := range []struct {
		dst *string
		v   any
	}{{&j.batching, d.Batching}, {&j.env, nonNilTags(d.Env)}, {&j.canary, d.Canary}, {&j.shadow, d.Shadow}, {&j.autoscaling, d.Autoscaling}, {&j.resources, d.Resources}, {&j.holdout, d.Holdout}} {
		b, err := json.Marshal(c.v)
		if err != nil { // a NaN in the canary analysis
			return j, fmt.Errorf("sqlstore: encode deployment %s: %w", d.Name, err)
		}
		*c.dst = string(b)
	}
	return j, nil
}

func scanDeployment(row rowScanner) (*slipway.Deployment, error) {
	var d slipway.Deployment
	var j deploymentJSON
	var created, updated string
	if err := row.Scan(&d.Name, &d.State, &d.Reason, &d.Model, &d.Version, &d.Alias, &d.FollowAlias, &d.Replicas,
		&j.batching, &d.TimeoutMS, &d.MaxQueue, &j.env, &j.canary, &j.shadow, &j.autoscaling, &d.Load, &d.Isolation, &j.resources, &d.Engine, &created, &updated, &d.Revision, &d.Project, &j.holdout); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		name, src string
		dst       any
	}{{"canary", j.canary, &d.Canary}, {"shadow", j.shadow, &d.Shadow}, {"batching", j.batching, &d.Batching}, {"env", j.env, &d.Env}, {"autoscaling", j.autoscaling, &d.Autoscaling}, {"resources", j.resources, &d.Resources}, {"holdout", j.holdout, &d.Holdout}} {
		if err := json.Unmarshal([]byte(c.src), c.dst); err != nil {
			return nil, fmt.Errorf("decode %s of %s: %w", c.name, d.Name, err)
		}
	}
	d.CreatedAt, d.UpdatedAt = parseTime(created), parseTime(updated)
	return &d, nil
}

// FindDeployment returns one deployment.
func (db *DB) FindDeployment(ctx context.Context, name string) (*slipway.Deployment, error) {
	return deploymentTable.find(ctx, db, name)
}

// FindDeployments lists every deployment by name.
func (db *DB) FindDeployments(ctx context.Context) ([]*slipway.Deployment, error) {
	return deploymentTable.all(ctx, db)
}

// UpdateDeployment stores d's desired state (everything but name and created_at).
func (db *DB) UpdateDeployment(ctx context.Context, d *slipway.Deployment) error {
	d.UpdatedAt = db.now().UTC()
	j, err := encodeDeployment(d)
	if err != nil {
		return err
	}
	res, err := db.w.ExecContext(ctx, `UPDATE deployments SET state = ?, reason = ?, model = ?, version = ?, alias = ?,
		follow_alias = ?, replicas = ?, batching = ?, timeout_ms = ?, max_queue = ?, env = ?, canary = ?, shadow = ?,
		autoscaling = ?, load_mode = ?, isolation = ?, resources = ?, holdout = ?, updated_at = ?, revision = revision + 1 WHERE name = ? AND revision = ?`,
		string(d.State), d.Reason, d.Model, d.Version, d.Alias, d.FollowAlias, d.Replicas, j.batching, d.TimeoutMS,
		d.MaxQueue, j.env, j.canary, j.shadow, j.autoscaling, d.Load, d.Isolation, j.resources, j.holdout, formatTime(d.UpdatedAt), d.Name, d.Revision)
	if err := affectedOne(res, err, fmt.Sprintf("deployment %q", d.Name)); slipway.ErrorCode(err) != slipway.ENOTFOUND {
		if err == nil {
			d.Revision++
		}
		return err
	}
	now, err := db.FindDeployment(ctx, d.Name)
	if err != nil {
		return err // gone
	}
	return slipway.Wrap(slipway.ECONFLICT, slipway.ErrStaleDeployment,
		"deployment %s was changed by another request meanwhile (revision %d, this change was based on revision %d): read it again and retry",
		d.Name, now.Revision, d.Revision)
}

// SetDeploymentState moves a deployment from → to with its reason (ECONFLICT when it is no longer in from).
func (db *DB) SetDeploymentState(ctx context.Context, name string, from, to slipway.DeploymentState, reason string) error {
	res, err := db.w.ExecContext(ctx, `UPDATE deployments SET state = ?, reason = ?, updated_at = ?, revision = revision + 1
		WHERE name = ? AND state = ?`,
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
	return deploymentTable.delete(ctx, db, name)
}
