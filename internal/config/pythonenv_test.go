package config

import (
	"io"
	"maps"
	"strings"
	"testing"
)

// Named Python environments from flags or SLIPWAY_PYTHON_ENVS (the flags win), refused with the reason.
func TestPythonEnvs(t *testing.T) {
	cases := []struct {
		name string
		env  string
		args []string
		want map[string]string
		err  string
	}{
		{"none by default", "", nil, nil, ""},
		{"flags, repeatable", "", []string{"--python-env", "ml=/opt/ml/bin/python", "--python-env", "old_sk.1=/opt/old/bin/python"},
			map[string]string{"ml": "/opt/ml/bin/python", "old_sk.1": "/opt/old/bin/python"}, ""},
		{"environment variable", "ml=/opt/ml/bin/python,gpu=/opt/gpu/bin/python", nil,
			map[string]string{"ml": "/opt/ml/bin/python", "gpu": "/opt/gpu/bin/python"}, ""},
		{"flags win over the variable", "gpu=/opt/gpu/bin/python", []string{"--python-env", "ml=/opt/ml/bin/python"},
			map[string]string{"ml": "/opt/ml/bin/python"}, ""},
		{"no path", "", []string{"--python-env", "ml"}, nil, `--python-env "ml": want NAME=/path/to/python`},
		{"bad name", "", []string{"--python-env", "m l=/x"}, nil, `python environment name "m l"`},
		{"default is --python", "", []string{"--python-env", "default=/x"}, nil, "the environment named default is --python"},
		{"twice", "", []string{"--python-env", "ml=/x", "--python-env", "ml=/y"}, nil, "environment ml is given twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "SLIPWAY_PYTHON_ENVS" {
					return tc.env
				}
				return ""
			}
			c, err := Parse(tc.args, getenv, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(c.PythonEnvs, tc.want) {
				t.Fatalf("PythonEnvs %v, want %v", c.PythonEnvs, tc.want)
			}
		})
	}
}
