package cli

import (
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) envsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "envs",
		Aliases: []string{"environments"},
		Short:   "The server's Python environments (--python-env), which python versions choose by name",
	}
	var packages []string
	list := &cobra.Command{
		Use:     "list [--packages NAME,...]",
		Aliases: []string{"ls"},
		Short:   "List the Python environments with their Python and package versions",
		Long: `List the server's Python environments: each one's name, interpreter and Python version, and the versions
of the packages named with --packages (all of them with --packages all, or with -o json). A version chooses an
environment with runtime.yaml MODEL_DEPLOYMENT.INFERENCE_ENV_SLUG or metadata.environment.name.`,
		Args: exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			envs, err := c.ListEnvironments(cmd.Context())
			if err != nil || a.jsonOutput() || len(packages) == 0 {
				return showAll(a, envs, err, []any{"NAME", "PYTHON", "INTERPRETER", "PACKAGES"}, func(e slipway.PythonEnvironment) []any {
					if e.Error != "" {
						return []any{envName(e), "?", e.Interpreter, "error: " + e.Error}
					}
					return []any{envName(e), e.PythonVersion, e.Interpreter, len(e.Packages)}
				})
			}
			return a.printEnvPackages(envs, packages)
		}),
	}
	list.Flags().StringSliceVar(&packages, "packages", nil, "also show the versions of these packages in each environment (all: every package)")
	cmd.AddCommand(list)
	return cmd
}

func envName(e slipway.PythonEnvironment) string {
	if e.Default && e.Name != slipway.DefaultPythonEnv {
		return e.Name + " (default)"
	}
	return e.Name
}

// printEnvPackages prints a table of environment, package and version: one row per package asked for
// (or installed, for "all") in each environment; a package an environment lacks shows "-".
func (a *app) printEnvPackages(envs []slipway.PythonEnvironment, packages []string) error {
	tw := newTable(a.stdout)
	row(tw, "ENVIRONMENT", "PYTHON", "PACKAGE", "VERSION")
	for _, e := range envs {
		if e.Error != "" {
			row(tw, e.Name, "?", "-", "error: "+e.Error)
			continue
		}
		names := packages
		if slices.Contains(packages, "all") {
			names = slices.SortedFunc(maps.Keys(e.Packages), func(x, y string) int { return strings.Compare(strings.ToLower(x), strings.ToLower(y)) })
		}
		for _, p := range names {
			row(tw, e.Name, e.PythonVersion, p, orDash(packageVersion(e.Packages, p)))
		}
	}
	return tw.Flush()
}

// packageVersion finds a distribution by its PEP 503 normalised name (scikit_learn is scikit-learn).
func packageVersion(installed map[string]string, name string) string {
	norm := func(s string) string { return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(s)) }
	for k, v := range installed {
		if norm(k) == norm(name) {
			return v
		}
	}
	return ""
}
