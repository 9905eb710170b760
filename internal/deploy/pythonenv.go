package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/modelruntime"
)

// checkPythonEnvironment runs the registration's environment check again before replicas of v start on this
// server: the environment may have changed since v was registered (a package upgraded in place, a venv
// rebuilt, an environment removed from the server's flags). A difference is an error naming the package, both
// versions and the environment, so the deployment fails with it rather than serving a model its pickles may
// not fit. Versions registered with allow_environment_mismatch accepted the difference. Replicas on other
// machines (network workers, pods) run in their own environment, which this server cannot inspect.
func (s *Service) checkPythonEnvironment(ctx context.Context, d *slipway.Deployment, v *slipway.ModelVersion, dir string) error {
	if v.Runtime != slipway.RuntimePython || s.networkReplicas(d) {
		return nil
	}
	declared := slipway.Environment{}
	if v.Environment != nil {
		declared = *v.Environment
	}
	env := slipway.PythonEnvOf(v)
	insp, err := s.runtimes.InspectPython(ctx, env, dir, slices.Sorted(maps.Keys(declared.Packages)))
	if err != nil {
		return fmt.Errorf("python environment check of %s version %d: %w", v.Model, v.Version, err)
	}
	diffs := modelruntime.EnvironmentDiffs(declared, insp)
	if len(diffs) == 0 {
		return nil
	}
	if v.AllowEnvironmentMismatch {
		s.log.WarnContext(ctx, "python environment differs from the training environment (allowed at registration)",
			"deployment", d.Name, "model", v.Model, "version", v.Version, "differences", strings.Join(diffs, "; "))
		return nil
	}
	return slipway.Errorf(slipway.EINVALID, "python environment check at deploy time: %s version %d: %s (the environment changed since the version was registered: restore those versions, or register a version trained with the environment's)",
		v.Model, v.Version, strings.Join(diffs, "; "))
}
