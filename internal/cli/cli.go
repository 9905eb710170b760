// Package cli is the `slipway` command line: the client commands (models, tokens...) that talk to a server
// through package client, plus the `server` and `worker` commands whose work cmd/slipway injects, so that the
// CLI never imports the server.
package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway/client"
)

// Hooks are the commands that run in-process parts of Slipway. cmd/slipway injects them; each gets its raw
// arguments (the flags are its own) and runs until ctx ends.
type Hooks struct {
	Server func(ctx context.Context, args []string) error
	Worker func(ctx context.Context, args []string) error
	// CopyDatabase runs `slipway db copy`.
	CopyDatabase CopyDatabase
}

// DefaultURL is the server the CLI talks to without --url or SLIPWAY_URL.
const DefaultURL = "http://127.0.0.1:8080"

// defaultDataDir is the server's default data folder, where it writes admin.token on first start.
const defaultDataDir = "slipway-data"

// Execute runs the CLI with args (without the program name) and returns the exit code: 0, or 1 after printing
// "Error: ..." on stderr.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer, hooks Hooks) int {
	a := &app{stdin: os.Stdin, stdout: stdout, stderr: stderr, hooks: hooks, getenv: os.Getenv}
	return a.execute(ctx, args)
}

// app is one run of the CLI: its streams, environment and global flags.
type app struct {
	stdin          io.Reader // `slipway predict --data -`
	stdout, stderr io.Writer
	hooks          Hooks
	getenv         func(string) string
	poll           time.Duration // how often waiting commands read a deployment; 0 is defaultPoll

	url    string
	token  string
	caCert string
	output string
	// project is the project calls work in (--project, SLIPWAY_PROJECT), sent as the Slipway-Project header.
	project string
}

func (a *app) execute(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var re *runError
	if !errors.As(err, &re) {
		// Cobra refused the command line itself: unknown command or flag, wrong arguments.
		fmt.Fprintf(a.stderr, "Error: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return 1
	}
	if cmd.Annotations[notAClient] != "" {
		// The server's own errors (an artifact store it cannot reach) are not about reaching a server.
		fmt.Fprintf(a.stderr, "Error: %v\n", re.err)
		return 1
	}
	fmt.Fprintf(a.stderr, "Error: %s\n", a.message(re.err))
	return 1
}

// notAClient annotates the commands that do not talk to a Slipway server (the server and the worker).
const notAClient = "not-a-client"

// runError marks an error returned by a command's work (as opposed to a command line cobra refused).
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// run adapts a command's work to cobra, marking its errors.
func run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return &runError{err}
		}
		return nil
	}
}

// runWithClient is run for a command that talks to the server: fn gets a client of the configured server.
func (a *app) runWithClient(fn func(cmd *cobra.Command, args []string, c *client.Client) error) func(*cobra.Command, []string) error {
	return run(func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		return fn(cmd, args, c)
	})
}

// message is what the person reads after "Error: ".
func (a *app) message(err error) string {
	var ae *client.Error
	var op *net.OpError
	switch {
	case errors.As(err, &ae):
		if ae.Status >= 500 && ae.Problem.RequestID != "" && !strings.Contains(ae.Problem.Detail, ae.Problem.RequestID) {
			return fmt.Sprintf("%s (request id %s)", ae.Problem.Detail, ae.Problem.RequestID)
		}
		return ae.Problem.Detail
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("cannot reach the Slipway server at %s: connection refused (is `slipway server` running? set --url or SLIPWAY_URL)", a.url)
	case errors.As(err, new(*tls.CertificateVerificationError)):
		return fmt.Sprintf("the certificate of %s is not trusted (%v): pass --ca-cert FILE or set SLIPWAY_CA_CERT to the CA (or the server's certificate)", a.url, err)
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Sprintf("cannot reach the Slipway server at %s: %v (set --url or SLIPWAY_URL)", a.url, op.Err)
	}
	return err.Error()
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Slipway: register, serve and monitor machine-learning models",
		Long: `Slipway registers model versions, serves them and monitors them, from one binary.

  slipway server                 run the server (see 'slipway server --help')
  slipway models push DIR --model NAME
  slipway models list
  slipway deploy NAME --model MODEL@ALIAS
  slipway predict NAME --data input.json

The client commands talk to --url (env SLIPWAY_URL) with --token (env SLIPWAY_TOKEN; by default the
admin.token file that the server writes in its data folder: $SLIPWAY_DATA_DIR or ./slipway-data).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("invalid --output %q: use table or json", a.output)
			}
			return nil
		},
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return err })

	pf := root.PersistentFlags()
	pf.StringVar(&a.url, "url", a.serverURL(), "server URL (env SLIPWAY_URL; else the server.url the server writes in its data folder)")
	// No default shown for the token: help output must not print a secret taken from the environment.
	pf.StringVar(&a.token, "token", "", "API token (env SLIPWAY_TOKEN; else $SLIPWAY_DATA_DIR/admin.token or ./slipway-data/admin.token)")
	pf.StringVar(&a.caCert, "ca-cert", a.getenv("SLIPWAY_CA_CERT"), "PEM file of a CA (or the server's self-signed certificate) to trust for an https:// server (env SLIPWAY_CA_CERT)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&a.project, "project", a.getenv("SLIPWAY_PROJECT"), "the project to work in (env SLIPWAY_PROJECT; default: the token's only project, else default)")

	root.AddCommand(a.serverCommand(), a.workerCommand(), a.modelsCommand(), a.deployCommand(), a.deploymentsCommand(),
		a.predictCommand(), a.tokensCommand(), a.whoamiCommand(), a.versionCommand(), a.batchCommand(), a.filesCommand(),
		a.jobsCommand(), a.pipelinesCommand(), a.schedulesCommand(), a.execLimitedCommand(), a.execSuperviseCommand(), a.backupCommand())
	// One line per command added since, so that parallel work merges cleanly.
	root.AddCommand(a.auditCommand())
	root.AddCommand(a.dbCommand())
	root.AddCommand(a.capturesCommand())
	root.AddCommand(a.rolloutsCommand())
	root.AddCommand(a.replaysCommand())
	root.AddCommand(a.monitorCommands()...)
	root.AddCommand(a.projectsCommand())
	root.AddCommand(a.envsCommand())
	return root
}

func (a *app) serverCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "server [flags]",
		Short: "Run the Slipway server",
		Long: `Run the Slipway server: the API, the catalog and the model replicas, with its data (SQLite database,
artifacts, admin.token) in --data-dir.

The server parses its own flags (--data-dir, --addr, ...): run 'slipway server --help' to list them.`,
		DisableFlagParsing: true,
		Annotations:        map[string]string{notAClient: "yes"},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if a.hooks.Server == nil {
				return errors.New("this binary was built without the server")
			}
			return a.hooks.Server(cmd.Context(), args)
		}),
	}
}

func (a *app) workerCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "worker [flags]",
		Short: "Run a model replica (started by the server, not by hand)",
		Long: `Run one model replica process. The server starts workers itself and talks to them over the worker
protocol; running one by hand is only useful to debug a runtime. It parses its own flags.`,
		Hidden:             true,
		DisableFlagParsing: true,
		Annotations:        map[string]string{notAClient: "yes"},
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if a.hooks.Worker == nil {
				return errors.New("this binary was built without the worker")
			}
			return a.hooks.Worker(cmd.Context(), args)
		}),
	}
}

// client returns an API client for --url with the resolved token.
func (a *app) client() (*client.Client, error) {
	u, err := url.Parse(a.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid server URL %q (--url or SLIPWAY_URL): use http://HOST:PORT or https://HOST", a.url)
	}
	token, err := a.resolveToken()
	if err != nil {
		return nil, err
	}
	opts := []client.Option{client.WithProject(a.project)}
	if a.caCert != "" {
		hc, err := client.HTTPClientTrusting(a.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		opts = append(opts, client.WithHTTPClient(hc))
	}
	return client.New(a.url, token, opts...), nil
}

// serverURL finds the server: $SLIPWAY_URL_FILE (given to job runs: it follows the server across restarts),
// $SLIPWAY_URL, the server.url file of the server's data folder ($SLIPWAY_DATA_DIR, then ./slipway-data), else
// DefaultURL.
func (a *app) serverURL() string {
	if u := readURLFile(a.getenv("SLIPWAY_URL_FILE")); u != "" {
		return u
	}
	if u := a.getenv("SLIPWAY_URL"); u != "" {
		return u
	}
	for _, dir := range a.dataDirs() {
		if u := readURLFile(filepath.Join(dir, "server.url")); u != "" {
			return u
		}
	}
	return DefaultURL
}

// dataDirs are where a server on this machine keeps admin.token and server.url: $SLIPWAY_DATA_DIR, then the
// server's default ./slipway-data.
func (a *app) dataDirs() []string {
	if dir := a.getenv("SLIPWAY_DATA_DIR"); dir != "" {
		return []string{dir, defaultDataDir}
	}
	return []string{defaultDataDir}
}

func readURLFile(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// resolveToken finds the token: --token, then SLIPWAY_TOKEN, then the admin.token file of the server's data
// folder ($SLIPWAY_DATA_DIR, then ./slipway-data).
func (a *app) resolveToken() (string, error) {
	if t := strings.TrimSpace(a.token); t != "" {
		return t, nil
	}
	if t := strings.TrimSpace(a.getenv("SLIPWAY_TOKEN")); t != "" {
		return t, nil
	}
	var candidates []string
	for _, dir := range a.dataDirs() {
		p := filepath.Join(dir, "admin.token")
		candidates = append(candidates, p)
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return "", fmt.Errorf("read token file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("token file %s is empty: pass --token or set SLIPWAY_TOKEN", p)
	}
	return "", fmt.Errorf("no API token: pass --token, set SLIPWAY_TOKEN, or run where the server's admin.token is (%s)",
		strings.Join(candidates, " or "))
}

func (a *app) jsonOutput() bool { return a.output == "json" }

// printJSON writes v as indented JSON on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// exactArgs is cobra.ExactArgs with a message naming the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %s (got %d arguments)", cmd.CommandPath(), names, len(args))
		}
		return nil
	}
}
