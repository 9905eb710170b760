package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read, export and verify the audit log (admin)",
		Long: `The audit log records every call that may change state (whatever its outcome), every refused call,
token creation, rotation and revocation, and the server's starts (with its configuration, passwords
redacted) and stops. Entries are append-only and hash-chained: 'slipway audit verify' detects an entry that was
edited, removed or reordered in the database.`,
	}
	cmd.AddCommand(a.auditListCommand(), a.auditExportCommand(), a.auditVerifyCommand())
	return cmd
}

// auditFilterFlags adds the filter flags to cmd and returns a function that reads them.
func auditFilterFlags(cmd *cobra.Command) func() (slipway.AuditFilter, error) {
	var from, to string
	var f slipway.AuditFilter
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "entries at or after: a duration ago (24h) or an RFC 3339 time")
	fl.StringVar(&to, "to", "", "entries before: a duration ago or an RFC 3339 time")
	fl.StringVar(&f.Actor, "actor", "", "a token's name or id")
	fl.StringVar(&f.Target, "target", "", "a target or its prefix, e.g. deployments/churn or models/churn")
	fl.StringVar(&f.Action, "action", "", "an action, e.g. createDeployment or server.start")
	return func() (slipway.AuditFilter, error) {
		tr, err := timeRange("--from", from, "--to", to, time.Now())
		f.From, f.To = tr.From, tr.To
		return f, err
	}
}

func (a *app) auditListCommand() *cobra.Command {
	var limit int
	var after int64
	cmd := &cobra.Command{
		Use:     "list [--from 24h] [--actor NAME] [--target PATH] [--action NAME]",
		Aliases: []string{"ls"},
		Short:   "List audit entries, oldest first",
		Args:    exactArgs(0, "no arguments"),
	}
	filter := auditFilterFlags(cmd)
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries (1-1000)")
	cmd.Flags().Int64Var(&after, "after", 0, "entries after this seq (to page on)")
	cmd.RunE = a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
		f, err := filter()
		if err != nil {
			return err
		}
		f.Limit, f.After = limit, after
		es, err := c.AuditEntries(cmd.Context(), f)
		return showAll(a, es, err, []any{"SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "STATUS", "PROBLEM", "CLIENT"}, func(e *slipway.AuditEntry) []any {
			status := "-"
			if e.Status != 0 {
				status = strconv.Itoa(e.Status)
			}
			return []any{e.Seq, e.Time.Local().Format(time.DateTime), orDash(e.TokenName), e.Action, orDash(e.Target), status, orDash(e.Problem), orDash(e.Client)}
		})
	})
	return cmd
}

func (a *app) auditExportCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "export [--file audit.jsonl] [filters]",
		Short:   "Export audit entries as JSON Lines (stdout, or a file written atomically)",
		Example: "  slipway audit export --from 720h --file audit-$(date +%F).jsonl\n  slipway audit verify --file audit-2026-12-06.jsonl",
		Args:    exactArgs(0, "no arguments"),
	}
	filter := auditFilterFlags(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "write here instead of stdout")
	cmd.RunE = a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
		f, err := filter()
		if err != nil {
			return err
		}
		if file == "" {
			_, err := c.ExportAudit(cmd.Context(), f, a.stdout)
			return err
		}
		n, err := a.saveDownload(file, "export", func(w io.Writer, _ func(int64, int64)) (int64, error) {
			return c.ExportAudit(cmd.Context(), f, w)
		}, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "Exported %d bytes of audit entries to %s.\n", n, file)
		return nil
	})
	return cmd
}

func (a *app) auditVerifyCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "verify [--file audit.jsonl]",
		Short: "Check the audit log's hash chain; exit status 0 only when it holds",
		Long: `Check that no audit entry was edited, removed or reordered: every entry's hash is recomputed and each must
chain to the one before, with no gap in seq. Without --file the server checks its database; with --file the
check runs here, on an export (slipway audit export), without the server. Keep the printed head hash
elsewhere: a later verify whose chain no longer reaches it shows that the newest entries were removed.`,
		Args: exactArgs(0, "no arguments"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var v *slipway.AuditVerification
			var err error
			if file != "" {
				v, err = verifyAuditFile(file)
			} else {
				var c *client.Client
				if c, err = a.client(); err == nil {
					v, err = c.VerifyAudit(cmd.Context())
				}
			}
			if err != nil {
				return err
			}
			if a.jsonOutput() {
				if err := a.printJSON(v); err != nil {
					return err
				}
			}
			if !v.OK {
				return fmt.Errorf("the audit chain is broken at entry %d: %s", v.BrokenAt, v.Reason)
			}
			if !a.jsonOutput() {
				fmt.Fprintf(a.stdout, "The audit chain holds: %d entries, seq %d to %d.\nHead: %s\n", v.Entries, v.FirstSeq, v.LastSeq, v.Head)
				if v.Anchor != "" {
					fmt.Fprintf(a.stdout, "It starts after removed entries (retention or a filtered export), at anchor %s.\n", v.Anchor)
				}
			}
			return nil
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "verify this JSON Lines export instead of the server's log")
	return cmd
}

// verifyAuditFile checks the chain of a JSON Lines export, streaming it.
func verifyAuditFile(path string) (*slipway.AuditVerification, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var v slipway.AuditChainVerifier
	dec := json.NewDecoder(bufio.NewReader(f))
	for line := 1; ; line++ {
		var e slipway.AuditEntry
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", path, line, err)
		}
		v.Add(&e)
	}
	r := v.Result()
	return &r, nil
}
