package monitor

import (
	"context"
	"fmt"

	"github.com/slipway-ml/slipway"
)

// RolloutRolledBack fires the deployment's alert rules for a rollout that a gate rolled back: each rule's
// history gets an event in state rolled_back with the reason, its webhook a delivery of type
// "alert.rolled_back", and the deployment's log a line. The rules' own state (ok or firing, a property of
// their metric) is left as it is, and their actions are not started: an action is typically the retrain
// pipeline whose candidate was just rolled back, and starting it again from its own failure would loop.
func (s *Service) RolloutRolledBack(ctx context.Context, deployment, message string) error {
	s.alertMu.Lock()
	defer s.alertMu.Unlock()
	rules, err := s.store.FindAlertRules(ctx, deployment)
	if err != nil {
		return fmt.Errorf("alert rules of %s: %w", deployment, err)
	}
	now := s.now().UTC()
	if len(rules) == 0 {
		s.offerLog(&slipway.LogLine{Deployment: deployment, Time: now, Kind: LogAlert, Line: slipway.AlertRolledBack + ": " + message})
		return nil
	}
	for _, r := range rules {
		ev := &slipway.AlertEvent{RuleID: r.ID, Deployment: deployment, Rule: r.Name, State: slipway.AlertRolledBack,
			Threshold: r.Threshold, Time: now, Message: message}
		if err := s.store.RecordAlertEvaluation(ctx, r, ev); err != nil {
			return fmt.Errorf("record the rollback on alert rule %s: %w", r.Name, err)
		}
		s.log.Warn("alert: rollout rolled back", "deployment", deployment, "rule", r.Name, "reason", message)
		s.offerLog(&slipway.LogLine{Deployment: deployment, Time: now, Kind: LogAlert, Line: ev.State + ": " + message})
		if r.Webhook != nil {
			select {
			case s.hooks <- webhookJob{rule: *r, ev: *ev}:
			default:
				s.log.Error("alert webhook dropped: too many deliveries pending", "deployment", deployment, "rule", r.Name)
			}
		}
	}
	return nil
}
