package cli

import (
	"fmt"
	"time"

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
	cmd.AddCommand(a.tokensCreateCommand(), a.tokensListCommand(), a.tokensRevokeCommand(), a.tokensRotateCommand())
	return cmd
}

func (a *app) tokensCreateCommand() *cobra.Command {
	var role, expiresIn, expiresAt string
	var projectRoles []string
	var rps float64
	var burst int
	cmd := &cobra.Command{
		Use:   "create NAME (--role admin|editor|viewer|predict | --project-role PROJECT=ROLE...) [--expires-in 720h | --expires-at RFC3339]",
		Short: "Create a token and print its secret (shown only once)",
		Long: `Create a token. Roles: admin (everything, tokens included), editor (push models, deploy, run jobs),
viewer (read), predict (call prediction endpoints only). The secret is printed once and cannot be retrieved
again: only its SHA-256 is stored. A token may expire (--expires-in, --expires-at); the server's
--max-token-ttl caps the lifetime and is the default when one is set. --rate-limit bounds the token's calls
to the prediction endpoints (beyond it: 429 with Retry-After).

--project-role PROJECT=ROLE (repeatable; editor, viewer or predict) limits the token to those projects instead
of a global --role: everything in another project answers 404 to it.`,
		Args: exactArgs(1, "one token name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			projects, err := parseProjectRoles(projectRoles)
			if err != nil {
				return err
			}
			r := slipway.Role(role)
			if err := (slipway.TokenSpec{Role: r, Projects: projects}).ValidateAccess(); err != nil {
				return err
			}
			if err := slipway.ValidateName("token", args[0]); err != nil {
				return err
			}
			at, err := parseOptionalTime("--expires-at", expiresAt)
			if err != nil {
				return err
			}
			spec := slipway.TokenSpec{Name: args[0], Role: r, Projects: projects, ExpiresIn: expiresIn, ExpiresAt: at}
			if rps != 0 || burst != 0 {
				spec.RateLimit = &slipway.TokenRateLimit{RequestsPerSecond: rps, Burst: burst}
				if err := spec.RateLimit.Validate(); err != nil {
					return fmt.Errorf("--rate-limit/--burst: %w", err)
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateTokenFrom(cmd.Context(), spec)
			if err != nil {
				return err
			}
			return a.showSecret(t, "Created")
		}),
	}
	cmd.Flags().StringVar(&role, "role", "", "admin, editor, viewer or predict (every project)")
	cmd.Flags().StringArrayVar(&projectRoles, "project-role", nil, "PROJECT=ROLE: a role in one project only (repeatable; instead of --role)")
	cmd.Flags().StringVar(&expiresIn, "expires-in", "", "lifetime, e.g. 12h or 720h (default: the server's --max-token-ttl, else never)")
	cmd.Flags().StringVar(&expiresAt, "expires-at", "", "expiry time, RFC 3339 (e.g. 2027-01-31T00:00:00Z)")
	cmd.Flags().Float64Var(&rps, "rate-limit", 0, "prediction calls per second this token may make (default: no limit)")
	cmd.Flags().IntVar(&burst, "burst", 0, "calls at once above --rate-limit (default: one second's worth)")
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
			return showAll(a, ts, err, []any{"ID", "NAME", "ROLE", "CREATED", "LAST USED", "EXPIRES", "REVOKED"}, func(t *slipway.Token) []any {
				return []any{t.ID, t.Name, formatRoles(t), formatTime(t.CreatedAt), orDash(formatTimePtr(t.LastUsedAt)), orDash(formatTimePtr(t.ExpiresAt)), orDash(formatTimePtr(t.RevokedAt))}
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

func (a *app) tokensRotateCommand() *cobra.Command {
	var rot slipway.TokenRotation
	var expiresAt string
	cmd := &cobra.Command{
		Use:   "rotate ID|NAME [--grace 1h] [--expires-in 720h | --expires-at RFC3339]",
		Short: "Give a token a new secret; the old one keeps working for a grace period",
		Long: `Rotate a token: print a new secret for it. The old secret keeps working until the grace period ends
(default 1h; --grace 0s ends it at once), so the clients holding it can be moved over one by one. Revoking the
token during the grace period stops both secrets. The token keeps its expiry unless --expires-in or
--expires-at gives a new one.`,
		Args: exactArgs(1, "one token id or name (see 'slipway tokens list')"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			var err error
			if rot.ExpiresAt, err = parseOptionalTime("--expires-at", expiresAt); err != nil {
				return err
			}
			id, err := tokenID(cmd, c, args[0])
			if err != nil {
				return err
			}
			t, err := c.RotateToken(cmd.Context(), id, rot)
			if err != nil {
				return err
			}
			if err := a.showSecret(t, "Rotated"); err != nil || a.jsonOutput() {
				return err
			}
			if t.PreviousSecretValidUntil != nil {
				fmt.Fprintf(a.stdout, "The old secret works until %s.\n", formatTime(*t.PreviousSecretValidUntil))
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&rot.Grace, "grace", "", "how long the old secret keeps working (default 1h)")
	cmd.Flags().StringVar(&rot.ExpiresIn, "expires-in", "", "a new lifetime for the token, e.g. 720h")
	cmd.Flags().StringVar(&expiresAt, "expires-at", "", "a new expiry time for the token, RFC 3339")
	return cmd
}

// showSecret prints a token's new secret, which is shown only this once.
func (a *app) showSecret(t *slipway.Token, verb string) error {
	if a.jsonOutput() {
		return a.printJSON(t)
	}
	fmt.Fprintf(a.stdout, "%s token %s (id %s, role %s):\n\n    %s\n\n", verb, t.Name, t.ID, t.Role, t.Secret)
	if t.ExpiresAt != nil {
		fmt.Fprintf(a.stdout, "It expires on %s.\n", formatTime(*t.ExpiresAt))
	}
	fmt.Fprintln(a.stdout, "This secret is shown only once: store it now (for example as SLIPWAY_TOKEN). It cannot be retrieved again.")
	return nil
}

// tokenID resolves a token id or the name of exactly one unrevoked token to its id.
func tokenID(cmd *cobra.Command, c *client.Client, idOrName string) (string, error) {
	ts, err := c.ListTokens(cmd.Context())
	if err != nil {
		return "", err
	}
	var byName []string
	for _, t := range ts {
		if t.ID == idOrName {
			return t.ID, nil
		}
		if t.Name == idOrName && t.RevokedAt == nil {
			byName = append(byName, t.ID)
		}
	}
	switch len(byName) {
	case 1:
		return byName[0], nil
	case 0:
		return "", fmt.Errorf("no token with id or name %q (see 'slipway tokens list')", idOrName)
	}
	return "", fmt.Errorf("%d active tokens are named %q: give the id (see 'slipway tokens list')", len(byName), idOrName)
}

func parseOptionalTime(flag, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, fmt.Errorf("%s %q: use RFC 3339, e.g. 2027-01-31T00:00:00Z", flag, v)
	}
	return &t, nil
}
