package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway/client"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  exactArgs(0, "no arguments"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			info := map[string]string{"version": client.Version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						info["commit"] = s.Value
					}
				}
			}
			if a.jsonOutput() {
				return a.printJSON(info)
			}
			fmt.Fprintf(a.stdout, "slipway %s (%s, %s", info["version"], info["go"], info["platform"])
			if c := info["commit"]; c != "" {
				fmt.Fprintf(a.stdout, ", commit %.12s", c)
			}
			fmt.Fprintln(a.stdout, ")")
			return nil
		}),
	}
}

func (a *app) whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the token the CLI is using and the server it talks to",
		Args:  exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			t, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(t)
			}
			fmt.Fprintf(a.stdout, "Token %s (id %s, role %s) on %s\n", t.Name, t.ID, t.Role, a.url)
			return nil
		}),
	}
}
