package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) tokensCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tokens",
		Aliases: []string{"token"},
		Short:   "Create, list and revoke API tokens (admin)",
	}
	cmd.AddCommand(a.tokensCreateCommand(), a.tokensListCommand(), a.tokensRevokeCommand())
	return cmd
}

func (a *app) tokensCreateCommand() *cobra.Command {
	var role string
	cmd := &cobra.Command{
		Use:   "create NAME --role admin|editor|viewer|predict",
		Short: "Create a token and print its secret (shown only once)",
		Long: `Create a token. Roles: admin (everything, tokens included), editor (push models, deploy, run jobs),
viewer (read), predict (call prediction endpoints only). The secret is printed once and cannot be retrieved
again: only its SHA-256 is stored.`,
		Args: exactArgs(1, "one token name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			r := slipway.Role(role)
			if !r.Valid() {
				return fmt.Errorf("invalid role %q: use admin, editor, viewer or predict", role)
			}
			if err := slipway.ValidateName("token", args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), args[0], r)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(t)
			}
			fmt.Fprintf(a.stdout, "Created token %s (id %s, role %s):\n\n    %s\n\n", t.Name, t.ID, t.Role, t.Secret)
			fmt.Fprintln(a.stdout, "This secret is shown only once: store it now (for example as SLIPWAY_TOKEN). It cannot be retrieved again.")
			return nil
		}),
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, editor, viewer or predict")
	requireFlags(cmd, "role")
	return cmd
}

func (a *app) tokensListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List tokens (never their secrets)",
		Args:    exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			ts, err := c.ListTokens(cmd.Context())
			return showAll(a, ts, err, []any{"ID", "NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"}, func(t *slipway.Token) []any {
				lastUsed, revoked := "-", "-"
				if t.LastUsedAt != nil {
					lastUsed = formatTime(*t.LastUsedAt)
				}
				if t.RevokedAt != nil {
					revoked = formatTime(*t.RevokedAt)
				}
				return []any{t.ID, t.Name, t.Role, formatTime(t.CreatedAt), lastUsed, revoked}
			})
		}),
	}
}

func (a *app) tokensRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it stops working at once",
		Args:  exactArgs(1, "one token id (see 'slipway tokens list')"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]string{"revoked": args[0]})
			}
			fmt.Fprintf(a.stdout, "Revoked token %s.\n", args[0])
			return nil
		}),
	}
}
