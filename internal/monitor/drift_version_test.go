package monitor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/workerproto"
)

// A canary's captures never mix into the live version's drift; the canary's own drift, without a baseline,
// is against its first window, and says so.
func TestDriftPerVersion(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	v2 := &slipway.ModelVersion{Model: "churn", State: slipway.VersionRegistering,
		VersionMetadata: slipway.VersionMetadata{Runtime: "python", InputSchema: churnSchema, OutputSchema: churnOutputs}}
	if err := e.db.CreateVersion(ctx, v2); err != nil {
		t.Fatal(err)
	}
	v2.State = slipway.VersionReady
	if err := e.db.FinishVersion(ctx, v2); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	var ref strings.Builder
	ref.WriteString("age,plan\n")
	for range 2000 {
		fmt.Fprintf(&ref, "%.0f,basic\n", 40+12*r.NormFloat64())
	}
	if _, err := e.s.PutBaseline(ctx, "churn", slipway.VersionRef{Number: 1}, FormatCSV, strings.NewReader(ref.String()), ""); err != nil {
		t.Fatal(err)
	}
	from := e.now.Now()
	var caps []*slipway.Capture
	for i := range 40 {
		version, shift := 1, 0.0
		if i%4 == 0 {
			version, shift = 2, 30 // the canary gets older customers: drift, if it were counted as version 1's
		}
		ages, plans := make([]float64, 50), make([]string, 50)
		for j := range ages {
			ages[j], plans[j] = 40+12*r.NormFloat64()+shift, "basic"
		}
		caps = append(caps, &slipway.Capture{Deployment: "churn", RequestID: fmt.Sprint(i), ModelVersion: version, Time: e.now.Now(), Rows: 50,
			Protocol: ProtoV2, Inputs: workerproto.EncodeTensors(nil, []workerproto.Tensor{workerproto.NewFloat64("age", nil, ages), workerproto.NewBytes("plan", nil, plans)}),
			Outputs: workerproto.EncodeTensors(nil, nil)})
		e.now.Add(time.Second)
	}
	if err := e.data.InsertCaptures(ctx, caps); err != nil {
		t.Fatal(err)
	}
	live, err := e.s.Drift(ctx, "churn", from, e.now.Now())
	if err != nil {
		t.Fatal(err)
	}
	if live.Rows != 1500 || live.Version != 1 || live.Baseline != BaselineRegistered || live.Features[0].Drifted {
		t.Fatalf("live version's drift: %d rows, version %d, baseline %q, age %+v", live.Rows, live.Version, live.Baseline, live.Features[0])
	}
	canary, err := e.s.DriftOfVersion(ctx, "churn", 2, from, e.now.Now())
	if err != nil {
		t.Fatal(err)
	}
	if canary.Rows != 500 || canary.Version != 2 || canary.Baseline != BaselineFirstWindow || canary.BaselineFrom == nil ||
		!canary.BaselineFrom.Equal(from) || canary.Features[0].Drifted {
		t.Fatalf("canary's drift: %+v", canary)
	}
}
