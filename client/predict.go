package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// PredictResponse is the answer of a prediction endpoint, as the server sent it.
type PredictResponse struct {
	Body []byte // the response body, not decoded
	// RequestID is the X-Request-Id header: the server's id for the request, quoted in its logs.
	RequestID string
	// ModelVersion (X-Slipway-Model-Version) and Replica (X-Slipway-Replica) say which version and which
	// replica answered: during a rollout, consecutive requests may get different versions.
	ModelVersion string
	Replica      string
	Status       int
}

// Predict calls POST /deployments/{name}/predict (OCI Data Science style): body, any JSON document, is given
// to the model's predict() as is, and the model's JSON answer comes back. The token needs role predict,
// editor or admin. A 429 (queue full) comes back as an *Error with RetryAfter set.
func (c *Client) Predict(ctx context.Context, name string, body []byte) (*PredictResponse, error) {
	return c.predict(ctx, "/deployments/"+url.PathEscape(name)+"/predict", body, "application/json")
}

// Invocations calls POST /deployments/{name}/invocations, the MLflow scoring protocol: body is JSON with
// exactly one of dataframe_split, dataframe_records, instances or inputs (and optionally params), or CSV
// with a header line. contentType is "application/json" (the default when empty) or "text/csv". The answer
// is {"predictions": ...}.
func (c *Client) Invocations(ctx context.Context, name string, body []byte, contentType string) (*PredictResponse, error) {
	if contentType == "" {
		contentType = "application/json"
	}
	return c.predict(ctx, "/deployments/"+url.PathEscape(name)+"/invocations", body, contentType)
}

// InferV2 calls POST /v2/models/{name}/infer, an Open Inference Protocol v2 (KServe, Triton) inference
// request: body is {"inputs": [{"name", "shape", "datatype", "data"}], ...}. Its error bodies,
// {"error": "..."}, come back as an *Error like every other error.
func (c *Client) InferV2(ctx context.Context, name string, body []byte) (*PredictResponse, error) {
	return c.predict(ctx, "/v2/models/"+url.PathEscape(name)+"/infer", body, "application/json")
}

// predict posts body to a prediction endpoint and returns the raw answer.
func (c *Client) predict(ctx context.Context, path string, body []byte, contentType string) (*PredictResponse, error) {
	resp, err := c.request(ctx, http.MethodPost, path, nil, bytes.NewReader(body), contentType, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: read response: %w", http.MethodPost, path, err)
	}
	return &PredictResponse{
		Body:         b,
		RequestID:    resp.Header.Get("X-Request-Id"),
		ModelVersion: resp.Header.Get("X-Slipway-Model-Version"),
		Replica:      resp.Header.Get("X-Slipway-Replica"),
		Status:       resp.StatusCode,
	}, nil
}
