package slipway

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRolloutSpecValidateNamesTheField(t *testing.T) {
	cases := []struct {
		body, want string // want: "" valid, else a piece of the message
	}{
		{`{"version": 2, "steps": [{"shadow": "10s"}, {"canary": 50, "for": "10s"}], "gates": {"min_agreement": 0.9}}`, ""},
		{`{"version": 0, "steps": [{"shadow": "10s"}]}`, "version:"},
		{`{"version": 2, "steps": []}`, "steps: give 1-10 steps"},
		{`{"version": 2, "steps": [{"canary": 150, "for": "10s"}]}`, "steps[0].canary: the canary's share of requests must be 1-99"},
		{`{"version": 2, "steps": [{"shadow": "10s"}, {"canary": 10}]}`, "steps[1].for:"},
		{`{"version": 2, "steps": [{"shadow": "10s", "canary": 10}]}`, "steps[0]: a step is a shadow or a canary, not both"},
		{`{"version": 2, "steps": [{"shadow": "1ms"}]}`, "steps[0].shadow: a step lasts"},
		{`{"version": 2, "steps": [{"canary": 5, "for": "10s"}], "gates": {"max_error_rate": 1.5}}`, "gates.max_error_rate: a share from 0 to 1"},
		{`{"version": 2, "steps": [{"canary": 5, "for": "10s"}], "gates": {"max_latency_ratio": 0.5}}`, "gates.max_latency_ratio"},
		{`{"version": 2, "steps": [{"canary": 5, "for": "10s"}], "gates": {"min_requests": 0}}`, "gates.min_requests"},
		{`{"version": 2, "steps": [{"canary": 5, "for": "10s"}], "gates": {"min_agreement": 0.9}}`, "gates.min_agreement: agreement is measured on a shadow step"},
		{`{"version": 2, "steps": [{"shadow": "10s"}], "gates": {"max_accuracy_drop": 0.1}}`, "gates.max_accuracy_drop"},
	}
	for _, c := range cases {
		var sp RolloutSpec
		if err := json.Unmarshal([]byte(c.body), &sp); err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		err := sp.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.body, err)
		case c.want != "" && (err == nil || ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.body, err, c.want)
		}
	}
	var sp RolloutSpec
	if err := json.Unmarshal([]byte(`{"version": 2, "steps": [{"canray": 5}]}`), &sp); err == nil || !strings.Contains(err.Error(), "canray") {
		t.Errorf("a misspelt step field: %v", err)
	}
	if !RolloutRunning.CanMoveTo(RolloutPromoted) || RolloutPromoted.CanMoveTo(RolloutRolledBack) || RolloutCanceled.CanMoveTo(RolloutRunning) {
		t.Error("only a RUNNING rollout moves, and it ends once")
	}
}
