package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) modelsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "models",
		Aliases: []string{"model"},
		Short:   "Push, list, inspect and pull model versions",
		Long: `Push, list, inspect and pull model versions.

A model reference is NAME (the model, or its newest READY version for pull), NAME:VERSION (a version
number) or NAME@ALIAS (for example churn@champion).`,
	}
	cmd.AddCommand(a.modelsPushCommand(), a.modelsListCommand(), a.modelsGetCommand(), a.modelsVersionsCommand(),
		a.modelsAliasCommand(), a.modelsPullCommand(), a.modelsDeleteCommand())
	return cmd
}

// listJSON is the envelope printed by list commands with -o json, as the API returns it (no items are []).
func listJSON[T any](items []T, total, offset, limit int) slipway.Page[T] {
	if items == nil {
		items = []T{}
	}
	return slipway.Page[T]{Items: items, Total: total, Offset: offset, Limit: limit}
}

func (a *app) modelsListCommand() *cobra.Command {
	var opts client.ListModelsOptions
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List models",
		Args:    exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			ms, total, err := c.ListModels(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(listJSON(ms, total, opts.Offset, opts.Limit))
			}
			a.printModels(ms)
			if shown := opts.Offset + len(ms); shown < total {
				fmt.Fprintf(a.stderr, "%d-%d of %d models: use --offset %d for more\n", opts.Offset+1, shown, total, shown)
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", "", "only models whose name contains this")
	f.StringVar(&opts.Tag, "tag", "", "only models with this tag: KEY or KEY=VALUE")
	f.IntVar(&opts.Limit, "limit", 100, "page size (1-1000)")
	f.IntVar(&opts.Offset, "offset", 0, "models to skip")
	return cmd
}

func (a *app) printModels(ms []*slipway.Model) {
	tw := newTable(a.stdout)
	row(tw, "NAME", "LATEST", "ALIASES", "TAGS", "UPDATED")
	for _, m := range ms {
		latest := "-"
		if m.LatestVersion > 0 {
			latest = strconv.Itoa(m.LatestVersion)
		}
		row(tw, m.Name, latest, formatMap(m.Aliases), formatMap(m.Tags), formatTime(m.UpdatedAt))
	}
	tw.Flush()
}

func (a *app) modelsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME[@ALIAS|:VERSION]",
		Short: "Show a model, or one of its versions",
		Long: `Show a model (its description, tags, aliases and latest version), or with @ALIAS or :VERSION one
version: state, runtime, files, checks and schemas.`,
		Example: "  slipway models get churn\n  slipway models get churn@champion\n  slipway models get churn:3 -o json",
		Args:    exactArgs(1, "one model reference"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name, ref, err := slipway.ParseModelRef(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if ref != (slipway.VersionRef{}) {
				v, err := c.GetVersion(cmd.Context(), name, ref.String())
				return show(a, v, err, a.printVersion)
			}
			m, err := c.GetModel(cmd.Context(), name)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(m)
			}
			var latest *slipway.ModelVersion
			if m.LatestVersion > 0 {
				if latest, err = c.GetVersion(cmd.Context(), name, strconv.Itoa(m.LatestVersion)); err != nil {
					return err
				}
			}
			a.printModel(m, latest)
			return nil
		}),
	}
}

func (a *app) printModel(m *slipway.Model, latest *slipway.ModelVersion) {
	tw := newTable(a.stdout)
	row(tw, "Name:", m.Name)
	row(tw, "Description:", m.Description)
	row(tw, "Tags:", formatMap(m.Tags))
	row(tw, "Created:", formatTime(m.CreatedAt))
	row(tw, "Updated:", formatTime(m.UpdatedAt))
	if latest != nil {
		row(tw, "Latest version:", fmt.Sprintf("%d (%s, %s, %s)", latest.Version, latest.State, latest.Runtime, formatTime(latest.CreatedAt)))
	} else {
		row(tw, "Latest version:", "none READY (see 'slipway models versions "+m.Name+"')")
	}
	tw.Flush()
	if len(m.Aliases) > 0 {
		fmt.Fprintln(a.stdout)
		tw = newTable(a.stdout)
		row(tw, "ALIAS", "VERSION")
		for _, alias := range slices.Sorted(maps.Keys(m.Aliases)) {
			row(tw, alias, m.Aliases[alias])
		}
		tw.Flush()
	}
}

// versionRows writes the rows that say which version v is and what state it is in.
func versionRows(tw io.Writer, v *slipway.ModelVersion) {
	row(tw, "Model:", v.Model)
	row(tw, "Version:", v.Version)
	row(tw, "State:", v.State)
	row(tw, "Runtime:", v.Runtime)
}

// printVersion shows one version: summary, checks and schemas.
func (a *app) printVersion(v *slipway.ModelVersion) {
	tw := newTable(a.stdout)
	versionRows(tw, v)
	row(tw, "Aliases:", strings.Join(v.Aliases, ", "))
	created := formatTime(v.CreatedAt)
	if v.CreatedBy != "" {
		created += " by " + v.CreatedBy
	}
	row(tw, "Created:", created)
	row(tw, "Files:", len(v.Files))
	row(tw, "Size:", formatBytes(v.Size))
	row(tw, "Digest:", v.Digest)
	if v.Description != "" {
		row(tw, "Description:", v.Description)
	}
	if len(v.Tags) > 0 {
		row(tw, "Tags:", formatMap(v.Tags))
	}
	if len(v.Metrics) > 0 {
		row(tw, "Metrics:", formatMap(v.Metrics))
	}
	tw.Flush()
	a.printChecks(v.Checks)
	printSchema(a.stdout, "Input schema", v.InputSchema)
	printSchema(a.stdout, "Output schema", v.OutputSchema)
}

func (a *app) printChecks(checks []slipway.Check) {
	if len(checks) == 0 {
		return
	}
	fmt.Fprintln(a.stdout)
	tw := newTable(a.stdout)
	row(tw, "ID", "PASSED", "MESSAGE")
	for _, c := range checks {
		row(tw, c.ID, yesNo(c.Passed), c.Message)
	}
	tw.Flush()
}

func printSchema(w io.Writer, title string, s *slipway.Schema) {
	if s == nil || len(s.Columns) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := newTable(w)
	row(tw, "NAME", "DTYPE", "SHAPE", "DOMAIN")
	for _, c := range s.Columns {
		shape := ""
		if len(c.Shape) > 0 {
			dims := make([]string, len(c.Shape))
			for i, d := range c.Shape {
				dims[i] = strconv.FormatInt(d, 10)
			}
			shape = "[" + strings.Join(dims, ",") + "]"
		}
		row(tw, c.Name, c.Dtype, shape, domain(c))
	}
	tw.Flush()
}

func domain(c slipway.ColumnSpec) string {
	var parts []string
	if len(c.Allowed) > 0 {
		vals := make([]string, len(c.Allowed))
		for i, v := range c.Allowed {
			vals[i] = fmt.Sprint(v)
		}
		parts = append(parts, "{"+strings.Join(vals, ",")+"}")
	}
	if c.Min != nil {
		parts = append(parts, fmt.Sprintf(">= %g", *c.Min))
	}
	if c.Max != nil {
		parts = append(parts, fmt.Sprintf("<= %g", *c.Max))
	}
	return strings.Join(parts, " ")
}

// namedClient checks the name of a kind ("model", "deployment") given as an argument, then returns a client.
func (a *app) namedClient(kind, name string) (*client.Client, error) {
	if err := slipway.ValidateName(kind, name); err != nil {
		return nil, err
	}
	return a.client()
}

func (a *app) modelsVersionsCommand() *cobra.Command {
	var offset, limit int
	cmd := &cobra.Command{
		Use:   "versions NAME",
		Short: "List a model's versions, newest first",
		Args:  exactArgs(1, "one model name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.namedClient("model", args[0])
			if err != nil {
				return err
			}
			vs, total, err := c.ListVersions(cmd.Context(), args[0], offset, limit)
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(listJSON(vs, total, offset, limit))
			}
			tw := newTable(a.stdout)
			row(tw, "VERSION", "STATE", "RUNTIME", "ALIASES", "FILES", "SIZE", "CREATED", "BY")
			for _, v := range vs {
				row(tw, v.Version, v.State, v.Runtime, strings.Join(v.Aliases, ","), len(v.Files), formatBytes(v.Size),
					formatTime(v.CreatedAt), v.CreatedBy)
			}
			tw.Flush()
			if shown := offset + len(vs); shown < total {
				fmt.Fprintf(a.stderr, "%d-%d of %d versions: use --offset %d for more\n", offset+1, shown, total, shown)
			}
			return nil
		}),
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "page size (1-1000)")
	cmd.Flags().IntVar(&offset, "offset", 0, "versions to skip")
	return cmd
}

func (a *app) modelsAliasCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "alias NAME VERSION ALIAS",
		Short:   "Point an alias (champion, staging...) at a READY version",
		Example: "  slipway models alias churn 3 champion",
		Args:    exactArgs(3, "a model name, a version number and an alias"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name, alias := args[0], strings.TrimPrefix(args[2], "@")
			if err := slipway.ValidateName("model", name); err != nil {
				return err
			}
			version, err := strconv.Atoi(args[1])
			if err != nil || version < 1 {
				return fmt.Errorf("invalid version %q: give a version number such as 3", args[1])
			}
			if err := validAlias(alias); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			move, err := c.SetAlias(cmd.Context(), name, alias, version)
			return show(a, move, err, a.printMove)
		}),
	}
}

func (a *app) printMove(m *slipway.AliasMove) {
	switch {
	case m.FromVersion == nil:
		fmt.Fprintf(a.stdout, "%s@%s -> version %d\n", m.Model, m.Alias, m.Version)
	case *m.FromVersion == m.Version:
		fmt.Fprintf(a.stdout, "%s@%s -> version %d (unchanged)\n", m.Model, m.Alias, m.Version)
	default:
		fmt.Fprintf(a.stdout, "%s@%s -> version %d (was %d)\n", m.Model, m.Alias, m.Version, *m.FromVersion)
	}
}

// validAlias checks an alias before anything is sent, with the server's rules.
func validAlias(alias string) error {
	if err := slipway.ValidateName("alias", alias); err != nil {
		return err
	}
	if alias == "latest" {
		return fmt.Errorf("alias \"latest\" is reserved: it always means the newest READY version")
	}
	if _, err := strconv.Atoi(alias); err == nil {
		return fmt.Errorf("alias %q is a number: aliases must not look like version numbers", alias)
	}
	return nil
}

func (a *app) modelsDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a model with all its versions and aliases",
		Args:  exactArgs(1, "one model name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.namedClient("model", args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteModel(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.jsonOutput() {
				return a.printJSON(map[string]any{"deleted": args[0]})
			}
			fmt.Fprintf(a.stdout, "Deleted model %s.\n", args[0])
			return nil
		}),
	}
}
