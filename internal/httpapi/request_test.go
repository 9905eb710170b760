package httpapi

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

// A body of the wrong JSON type is refused in JSON's words, not Go's: the client never saw the Go types.
func TestDecodeJSONTypeErrors(t *testing.T) {
	for body, want := range map[string]string{
		`[1]`:                "request body must be an object, not array",
		`{"replicas":"two"}`: `request body: field "replicas" must be an integer, not string`,
		`{"env":[1]}`:        `request body: field "env" must be an object, not array`,
	} {
		var v slipway.DeploymentSpec
		err := decodeJSON(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(body)), &v, 1<<20)
		if slipway.ErrorCode(err) != slipway.EINVALID || slipway.ErrorMessage(err) != want {
			t.Errorf("%s: %v; want %s (%s)", body, err, want, slipway.EINVALID)
		}
	}
}
