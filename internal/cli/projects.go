package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) projectsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "projects",
		Aliases: []string{"project"},
		Short:   "Create and list projects (other commands work in one with --project or SLIPWAY_PROJECT)",
	}
	var description string
	create := &cobra.Command{
		Use:   "create NAME [--description TEXT]",
		Short: "Create a project (admin)",
		Args:  exactArgs(1, "one project name"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			spec := slipway.ProjectSpec{Name: args[0], Description: description}
			if err := spec.Validate(); err != nil {
				return err
			}
			p, err := c.CreateProject(cmd.Context(), spec)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(p)
			}
			fmt.Fprintf(a.stdout, "Created project %s. Work in it with --project %s (or SLIPWAY_PROJECT=%s).\n", p.Name, p.Name, p.Name)
			return nil
		}),
	}
	create.Flags().StringVar(&description, "description", "", "what the project is for")
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the projects this token may see",
		Args:    exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			ps, err := c.ListProjects(cmd.Context())
			return showAll(a, ps, err, []any{"NAME", "DESCRIPTION", "CREATED BY"}, func(p *slipway.Project) []any {
				return []any{p.Name, orDash(p.Description), orDash(p.CreatedBy)}
			})
		}),
	}
	cmd.AddCommand(create, list)
	return cmd
}

// parseProjectRoles reads --project-role values, PROJECT=ROLE each.
func parseProjectRoles(values []string) (map[string]slipway.Role, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := map[string]slipway.Role{}
	for _, v := range values {
		p, r, ok := strings.Cut(v, "=")
		if !ok || p == "" || r == "" {
			return nil, fmt.Errorf("invalid --project-role %q: use PROJECT=ROLE, e.g. risk=editor", v)
		}
		if _, dup := out[p]; dup {
			return nil, fmt.Errorf("--project-role names project %q twice", p)
		}
		out[p] = slipway.Role(r)
	}
	return out, nil
}

// formatRoles shows a token's access: its global role, or its role in each project.
func formatRoles(t *slipway.Token) string {
	if t.Role != "" {
		return string(t.Role)
	}
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(t.Projects)) {
		parts = append(parts, p+"="+string(t.Projects[p]))
	}
	return strings.Join(parts, ",")
}
