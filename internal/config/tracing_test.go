package config

import (
	"io"
	"testing"
)

// Traces are off by default and turned on by the standard OTLP endpoint variables, unless the SDK is disabled or
// the traces exporter is "none".
func TestTracingFromTheStandardVariables(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "otlp"}, true},
	} {
		getenv := func(k string) string { return tc.env[k] }
		if got := TracingFromEnv(getenv); got != tc.want {
			t.Errorf("%v: tracing %v, want %v", tc.env, got, tc.want)
		}
		c, err := Parse([]string{"--data-dir", t.TempDir()}, getenv, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Tracing != tc.want {
			t.Errorf("%v: Config.Tracing %v, want %v", tc.env, c.Tracing, tc.want)
		}
	}
}
