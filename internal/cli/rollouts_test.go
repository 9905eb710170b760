package cli

import (
	"strings"
	"testing"
	"time"
)

func TestRolloutFlagsSpec(t *testing.T) {
	f := rolloutFlags{version: 3, steps: []string{"shadow=10s", "canary=50:2m"},
		gates: []string{"min_agreement=0.9", "min_requests=40", "max_error_rate=0"}}
	sp, err := f.spec()
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.Steps) != 2 || sp.Steps[0].Shadow.D() != 10*time.Second || sp.Steps[1].Canary != 50 || sp.Steps[1].For.D() != 2*time.Minute ||
		*sp.Gates.MinAgreement != 0.9 || *sp.Gates.MinRequests != 40 || sp.Gates.MaxErrorRate == nil || *sp.Gates.MaxErrorRate != 0 {
		t.Fatalf("spec = %+v", sp)
	}
	for _, c := range []struct {
		f    rolloutFlags
		want string
	}{
		{rolloutFlags{steps: []string{"shadow=1s"}}, "--version is required"},
		{rolloutFlags{version: 2}, "give at least one --step"},
		{rolloutFlags{version: 2, steps: []string{"canary=50"}}, `--step "canary=50": a canary step needs its duration`},
		{rolloutFlags{version: 2, steps: []string{"shadow=ten"}}, `--step "shadow=ten": "ten" is not a duration`},
		{rolloutFlags{version: 2, steps: []string{"blue=1s"}}, `unknown step kind "blue"`},
		{rolloutFlags{version: 2, steps: []string{"shadow=1s"}, gates: []string{"agreement=0.9"}}, `unknown gate "agreement"`},
		{rolloutFlags{version: 2, steps: []string{"shadow=1s"}, gates: []string{"min_requests=1.5"}}, "min_requests is a whole number"},
	} {
		if _, err := c.f.spec(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.f, err, c.want)
		}
	}
}
