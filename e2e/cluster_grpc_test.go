package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/slipway-ml/slipway/internal/inference/inferencepb"
)

// A gRPC ModelInfer sent to the server that does not host the deployment is forwarded to the host's gRPC
// address (recorded in the servers table): it answers what HTTP answers, with the caller's request id, and the
// host records the call (its monitor counts it, not the forwarding server's).
func TestClusterGRPCForwardedToTheHost(t *testing.T) {
	a, b, pg := twoClusterMembers(t)
	if out, errOut, code := b.cli("models", "push", examplePath("onnx-churn", "model.onnx"), "--model", "churn-onnx",
		"--metadata", examplePath("onnx-churn", "metadata.json")); code != 0 {
		t.Fatalf("push onnx: %s %s", out, errOut)
	}
	deploy(t, b, "churn-onnx", "--model", "churn-onnx:1") // B hosts it
	idB := serverID(t, pg, b)
	if got := pg.Psql(t, "slipway", "SELECT grpc_address FROM servers WHERE id = '"+idB+"'"); got != "grpc://"+b.grpcAddr() {
		t.Fatalf("B's recorded gRPC address %q, want grpc://%s", got, b.grpcAddr())
	}

	features, n := onnxFeatures(t)
	req := map[string]any{"inputs": []map[string]any{{"name": "features", "shape": []int{n, 4}, "datatype": "FP32", "data": features}}}
	resp, body := a.do(t, "POST", "/v2/models/churn-onnx/infer", a.Token, bytes.NewReader(mustJSON(req)), "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP v2 through A: %d %s", resp.StatusCode, body)
	}
	var httpAnswer struct{ Outputs []v2Output }
	if err := json.Unmarshal(body, &httpAnswer); err != nil || len(httpAnswer.Outputs) == 0 {
		t.Fatalf("HTTP v2 answer %s: %v", body, err)
	}

	conn, err := grpc.NewClient(a.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := inferencepb.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer "+a.Token, "x-request-id", "grpc-forward-1"), time.Minute)
	defer cancel()
	f32 := make([]float32, len(features))
	for i, f := range features {
		f32[i] = float32(f)
	}
	in := &inferencepb.ModelInferRequest{ModelName: "churn-onnx", Inputs: []*inferencepb.ModelInferRequest_InferInputTensor{
		{Name: "features", Datatype: "FP32", Shape: []int64{int64(n), 4}, Contents: &inferencepb.InferTensorContents{Fp32Contents: f32}}}}
	var header metadata.MD
	res, err := c.ModelInfer(ctx, in, grpc.Header(&header))
	if err != nil {
		t.Fatalf("gRPC ModelInfer through A (B hosts the deployment): %v", err)
	}
	sameOutputs(t, "gRPC forwarded by A", grpcOutputs(t, res), httpAnswer.Outputs)
	if res.Id != "grpc-forward-1" || len(header.Get("x-request-id")) != 1 || header.Get("x-request-id")[0] != "grpc-forward-1" ||
		len(header.Get("x-slipway-model-version")) != 1 || len(header.Get("x-slipway-replica")) != 1 {
		t.Fatalf("forwarded answer: id %q, header %v; want the caller's request id and the host's headers", res.Id, header)
	}
	// B's replica answered: the one B reports for the deployment (A runs none).
	d, err := b.Client().GetDeployment(ctx, "churn-onnx")
	if err != nil || len(d.ReplicaStatus) != 1 || d.ReplicaStatus[0].ID != header.Get("x-slipway-replica")[0] {
		t.Fatalf("the answering replica %v is not B's (%+v, %v)", header.Get("x-slipway-replica"), d, err)
	}
	checkClusterGRPC(t, a, b, idB, "churn-onnx")
}
