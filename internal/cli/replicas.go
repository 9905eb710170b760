package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway/client"
)

// deploymentsReplicaSpecCommand prints the replica spec of an external deployment for `slipway worker serve`.
func (a *app) deploymentsReplicaSpecCommand() *cobra.Command {
	var version int
	cmd := a.deploymentCommand("replica-spec", "Print the replica spec network workers of an external deployment need",
		func(cmd *cobra.Command, c *client.Client, name string) error {
			spec, err := c.IssueReplicaSpec(cmd.Context(), name, version)
			return show(a, spec, err, func(s *client.ReplicaSpecAnswer) {
				fmt.Fprintln(a.stdout, s.ReplicaSpec)
			})
		})
	cmd.Long = `Print the replica spec of a deployment created with --engine external: the server URL, the deployment,
the version and the deployment's replica secret, as one string. Start each network replica with it:

  SLIPWAY_REPLICA_SPEC=$(slipway deployments replica-spec NAME) slipway worker serve --listen :7070 --advertise HOST:7070

It carries a secret (an admin token is needed to get it): keep it like a password.`
	cmd.Flags().IntVar(&version, "version", 0, "the canary's or the shadow's version (default: the deployment's)")
	return cmd
}
