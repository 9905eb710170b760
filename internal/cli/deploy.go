package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/client"
)

// defaultPoll is how often a waiting command reads the deployment (app.poll overrides it in tests).
const defaultPoll = time.Second

// defaultBatchWaitMS is --batch-wait-ms when --batch-size turns batching on without it: batches form when a
// replica frees up, so waiting is rarely worth its latency.
const defaultBatchWaitMS = 0

// deploymentFlags are the flags deploy and deployments update share. A flag changes the deployment only when
// it is given: the others keep the server's defaults (deploy) or the current values (update).
type deploymentFlags struct {
	replicas, batchSize, batchWaitMS, timeoutMS, maxQueue int
	env                                                   []string
	followAlias, noFollow                                 bool
	canaryVersion, canaryWeight, canaryReplicas           int
	shadowVersion, shadowReplicas                         int
	noCanary, noShadow                                    bool
	shadowCompare                                         bool
	holdout                                               float64
	analysis                                              canaryAnalysisFlags
	autoscale                                             autoscaleFlags
	resources                                             resourceFlags
	noWait                                                bool
	waitTimeout                                           time.Duration
}

// register adds the flags to cmd. The defaults shown are the server's for a new deployment; on update a
// flag not given leaves the value as it is, so no default is shown.
func (f *deploymentFlags) register(cmd *cobra.Command, create bool) {
	def := func(v int) int {
		if create {
			return v
		}
		return 0
	}
	fs := cmd.Flags()
	fs.IntVar(&f.replicas, "replicas", def(1), "number of replica processes (1-64)")
	fs.IntVar(&f.batchSize, "batch-size", 0, "merge up to N concurrent requests into one model call (0 or 1: no batching)")
	waitUsage := "with --batch-size: how long a batch may wait for more rows once a replica is free, in ms"
	if !create {
		waitUsage += " (unchanged when not given, 0 if batching was off)"
	}
	fs.IntVar(&f.batchWaitMS, "batch-wait-ms", def(defaultBatchWaitMS), waitUsage)
	fs.IntVar(&f.timeoutMS, "timeout-ms", def(30_000), "answer 504 when the model takes longer than this, in ms")
	fs.IntVar(&f.maxQueue, "max-queue", def(100), "requests waiting for a replica beyond this are refused with 429")
	fs.StringArrayVar(&f.env, "env", nil, "environment variable of the replicas, KEY=VALUE (repeat the flag for more)")
	fs.IntVar(&f.canaryVersion, "canary-version", 0, "canary: another version of the model, on replicas of its own, that takes --canary-weight percent of the requests")
	fs.IntVar(&f.canaryWeight, "canary-weight", def(defaultCanaryWeight), "percent of the requests the canary takes (1-99)")
	fs.IntVar(&f.canaryReplicas, "canary-replicas", def(1), "replica processes of the canary (1-64)")
	f.analysis.register(cmd, create)
	fs.IntVar(&f.shadowVersion, "shadow-version", 0, "shadow: another version of the model, on replicas of its own, that gets a copy of every request (its answers are dropped, its outcomes counted)")
	fs.IntVar(&f.shadowReplicas, "shadow-replicas", def(1), "replica processes of the shadow (1-64)")
	fs.BoolVar(&f.shadowCompare, "shadow-compare", false, "keep the shadow's answers next to the live ones (sampled like captures): see 'slipway deployments shadow NAME'")
	if !create {
		fs.BoolVar(&f.noCanary, "no-canary", false, "remove the canary: every request goes to the deployment's version")
		fs.BoolVar(&f.noShadow, "no-shadow", false, "remove the shadow")
	}
	fs.Float64Var(&f.holdout, "holdout", 0, "share of the requests held out (0-0.5; 0 removes it): their responses carry Slipway-Holdout: true so that the application withholds its action, and performance is reported apart for them")
	f.autoscale.register(cmd, create)
	f.resources.register(cmd, "replica")
	f.registerWait(cmd)
}

// registerWait adds the flags that say whether and how long to wait for the replicas.
func (f *deploymentFlags) registerWait(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "return at once instead of waiting until the replicas are ready")
	cmd.Flags().DurationVar(&f.waitTimeout, "wait-timeout", 5*time.Minute, "give up waiting after this long (the server carries on)")
}

// batching is the batching --batch-size asks for.
func (f *deploymentFlags) batching() *slipway.Batching {
	return &slipway.Batching{MaxBatchSize: f.batchSize, MaxWaitMS: f.batchWaitMS}
}

// fillSpec sets the fields of sp whose flags were given, the batching, the canary and the shadow included.
// current is the deployment as it is (update; only the parts the flags edit need be filled in), or a zero
// deployment (deploy).
func (f *deploymentFlags) fillSpec(cmd *cobra.Command, sp *slipway.DeploymentSpec, current *slipway.Deployment) error {
	if err := f.fill(cmd, sp, current.Batching); err != nil {
		return err
	}
	if err := f.fillCanary(cmd, sp, current.Canary); err != nil {
		return err
	}
	if err := f.autoscale.fill(cmd, sp, current.Autoscaling); err != nil {
		return err
	}
	sp.Resources = f.resources.resources(cmd, current.Resources)
	if cmd.Flags().Changed("holdout") {
		sp.Holdout = &slipway.Holdout{Share: f.holdout}
	}
	return f.fillShadow(cmd, sp, current.Shadow)
}

// fill sets the fields of sp whose flags were given. current is the deployment's batching when it is
// known (update), so that --batch-size alone keeps the current wait and --batch-wait-ms alone the size.
func (f *deploymentFlags) fill(cmd *cobra.Command, sp *slipway.DeploymentSpec, current *slipway.Batching) error {
	changed := cmd.Flags().Changed
	if changed("replicas") {
		sp.Replicas = &f.replicas
	}
	if changed("timeout-ms") {
		sp.TimeoutMS = &f.timeoutMS
	}
	if changed("max-queue") {
		sp.MaxQueue = &f.maxQueue
	}
	switch {
	case changed("batch-size") && !f.batching().Enabled():
		sp.Batching = &slipway.Batching{} // off
	case changed("batch-size"):
		wait := f.batchWaitMS
		switch {
		case changed("batch-wait-ms"):
		case current != nil:
			wait = current.MaxWaitMS
		default:
			wait = defaultBatchWaitMS
		}
		sp.Batching = &slipway.Batching{MaxBatchSize: f.batchSize, MaxWaitMS: wait}
	case changed("batch-wait-ms") && current != nil:
		sp.Batching = &slipway.Batching{MaxBatchSize: current.MaxBatchSize, MaxWaitMS: f.batchWaitMS}
	case changed("batch-wait-ms"):
		return errors.New("--batch-wait-ms needs --batch-size: batching is off")
	}
	if changed("env") {
		env, err := parseEnv(f.env)
		if err != nil {
			return err
		}
		sp.Env = env
	}
	return nil
}

// anyChanged reports whether one of the flags was given.
func anyChanged(cmd *cobra.Command, names ...string) bool {
	for _, name := range names {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// The flags of a canary and of a shadow, beside --no-canary and --no-shadow.
var (
	canaryFlags = append([]string{"canary-version", "canary-weight", "canary-replicas"}, analysisFlags...)
	shadowFlags = []string{"shadow-version", "shadow-replicas", "shadow-compare"}
)

// canaryAnalysisFlags turn on and tune the automatic analysis of a canary (slipway.CanaryAnalysis).
type canaryAnalysisFlags struct {
	on, off                     bool
	interval                    time.Duration
	minRequests, promoteAfter   int
	maxErrorRate, maxLatencyRat float64
}

var analysisFlags = []string{"canary-analysis", "no-canary-analysis", "canary-interval", "canary-min-requests",
	"canary-max-error-rate", "canary-max-latency-ratio", "canary-promote-after"}

func (a *canaryAnalysisFlags) register(cmd *cobra.Command, create bool) {
	fs := cmd.Flags()
	fs.BoolVar(&a.on, "canary-analysis", false, "promote or remove the canary automatically by its error rate (and latency) against the deployment's version; the --canary-* analysis flags below imply it")
	fs.DurationVar(&a.interval, "canary-interval", 0, "canary analysis: length of an interval (default 1m)")
	fs.IntVar(&a.minRequests, "canary-min-requests", 0, "canary analysis: canary requests an interval needs before it is judged (default 50)")
	fs.Float64Var(&a.maxErrorRate, "canary-max-error-rate", 0, "canary analysis: largest share of 5xx answers that passes (default 0.01)")
	fs.Float64Var(&a.maxLatencyRat, "canary-max-latency-ratio", 0, "canary analysis: largest canary p99 / version p99 that passes (default: latency not checked)")
	fs.IntVar(&a.promoteAfter, "canary-promote-after", 0, "canary analysis: passed intervals in a row that promote the canary (default 5)")
	if !create {
		fs.BoolVar(&a.off, "no-canary-analysis", false, "stop the canary's automatic analysis (the canary stays)")
	}
}

// apply sets c.Analysis from the flags that were given, on top of its current analysis.
func (a *canaryAnalysisFlags) apply(cmd *cobra.Command, c *slipway.Canary) error {
	changed := cmd.Flags().Changed
	if a.off {
		if anyChanged(cmd, analysisFlags[2:]...) || a.on {
			return errors.New("--no-canary-analysis stops the analysis: give it without the other analysis flags")
		}
		c.Analysis = nil
		return nil
	}
	if !anyChanged(cmd, analysisFlags...) {
		return nil
	}
	an := slipway.CanaryAnalysis{}
	if c.Analysis != nil {
		an = *c.Analysis
	}
	if changed("canary-interval") {
		if a.interval%time.Second != 0 || a.interval < time.Second {
			return fmt.Errorf("--canary-interval must be whole seconds, at least 1s, got %s", a.interval)
		}
		an.IntervalSeconds = int(a.interval / time.Second)
	}
	assign(cmd, "canary-min-requests", &an.MinRequests, a.minRequests)
	assign(cmd, "canary-max-error-rate", &an.MaxErrorRate, a.maxErrorRate)
	assign(cmd, "canary-max-latency-ratio", &an.MaxLatencyRatio, a.maxLatencyRat)
	assign(cmd, "canary-promote-after", &an.PromoteAfter, a.promoteAfter)
	c.Analysis = &an
	return nil
}

// assign sets *dst to v when the flag name was given.
func assign[T any](cmd *cobra.Command, name string, dst *T, v T) {
	if cmd.Flags().Changed(name) {
		*dst = v
	}
}

// defaultCanaryWeight is a new canary's share of the requests, in percent.
const defaultCanaryWeight = 10

// fillCanary sets sp.Canary from the canary flags. current is the deployment's canary (update; nil when it
// has none), so that --canary-weight alone reweights it and --canary-replicas alone scales it.
func (f *deploymentFlags) fillCanary(cmd *cobra.Command, sp *slipway.DeploymentSpec, current *slipway.Canary) error {
	c, edit, err := sideFlags(cmd, "canary", f.noCanary, canaryFlags, current, slipway.Canary{Weight: defaultCanaryWeight, Replicas: 1})
	if err != nil || !edit {
		sp.Canary = c
		return err
	}
	assign(cmd, "canary-version", &c.Version, f.canaryVersion)
	assign(cmd, "canary-weight", &c.Weight, f.canaryWeight)
	assign(cmd, "canary-replicas", &c.Replicas, f.canaryReplicas)
	if err := f.analysis.apply(cmd, c); err != nil {
		return err
	}
	sp.Canary = c
	return nil
}

// fillShadow sets sp.Shadow from the shadow flags. current is the deployment's shadow (update; nil when it
// has none), so that --shadow-replicas alone scales it.
func (f *deploymentFlags) fillShadow(cmd *cobra.Command, sp *slipway.DeploymentSpec, current *slipway.Shadow) error {
	sh, edit, err := sideFlags(cmd, "shadow", f.noShadow, shadowFlags, current, slipway.Shadow{Replicas: 1})
	if err != nil || !edit {
		sp.Shadow = sh
		return err
	}
	assign(cmd, "shadow-version", &sh.Version, f.shadowVersion)
	assign(cmd, "shadow-replicas", &sh.Replicas, f.shadowReplicas)
	assign(cmd, "shadow-compare", &sh.Compare, f.shadowCompare)
	sp.Shadow = sh
	return nil
}

// sideFlags reads what the flags of a canary or a shadow (role) ask for: nil when none was given, the zero
// value (remove it) for --no-ROLE, else a copy of current (of fresh when there is none) for the caller to
// change (edit).
func sideFlags[T any](cmd *cobra.Command, role string, remove bool, flags []string, current *T, fresh T) (side *T, edit bool, err error) {
	switch {
	case remove && anyChanged(cmd, flags...):
		return nil, false, fmt.Errorf("--no-%s removes the %s: give it without the other --%s flags", role, role, role)
	case remove:
		return new(T), false, nil
	case !anyChanged(cmd, flags...):
		return nil, false, nil
	case current == nil && !cmd.Flags().Changed(role+"-version"):
		return nil, false, fmt.Errorf("the deployment has no %s: give --%s-version", role, role)
	case current == nil:
		current = &fresh
	}
	next := *current
	return &next, true, nil
}

// parseEnv reads KEY=VALUE pairs; a key given twice is refused (which one was meant?).
func parseEnv(pairs []string) (map[string]string, error) {
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("invalid --env %q: use KEY=VALUE", p)
		}
		if _, dup := env[k]; dup {
			return nil, fmt.Errorf("--env %s is given twice", k)
		}
		env[k] = v
	}
	return env, nil
}

func (a *app) deployCommand() *cobra.Command {
	var model, engine string
	var f deploymentFlags
	cmd := &cobra.Command{
		Use:   "deploy NAME --model MODEL[@ALIAS|:VERSION]",
		Short: "Serve a model version behind stable prediction URLs",
		Long: `Create a deployment: NAME gets replicas of the model version and stable prediction URLs (OCI-style
predict, MLflow invocations and Open Inference Protocol v2). Without @ALIAS or :VERSION the newest READY
version is deployed. A deployment made by @ALIAS follows the alias: it rolls out to the alias's version
whenever the alias moves. --no-follow pins the version the alias names now instead. --canary-analysis
pins it too, since the analysis promotes a canary by setting the version: with --follow-alias as well,
the server refuses the deployment.

The command waits until the replicas are ready and then prints the URLs with curl examples (exit 0), or
the reason the deployment FAILED (exit 1). --no-wait returns at once; the replicas keep starting on the
server ('slipway deployments get NAME' shows them).`,
		Example: `  slipway deploy churn-api --model churn@champion --replicas 2      # follows @champion
  slipway deploy churn-api --model churn@champion --no-follow            # pinned to @champion's version now
  slipway deploy churn-api --model churn:3 --batch-size 32 --env OMP_NUM_THREADS=1
  slipway deploy churn-api --model churn:3 --canary-version 4 --canary-weight 20
  slipway deploy churn-api --model churn:3 --canary-version 4 --canary-analysis --canary-max-error-rate 0.005`,
		Args: exactArgs(1, "one deployment name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := slipway.ValidateName("deployment", name); err != nil {
				return err
			}
			m, ref, err := slipway.ParseModelRef(model)
			if err != nil {
				return err
			}
			sp := slipway.DeploymentSpec{Name: name, Model: m}
			switch {
			case ref.Alias != "":
				sp.Alias = &ref.Alias
			case ref.Number > 0:
				sp.Version = &ref.Number
			}
			switch {
			case ref.Alias == "" && f.followAlias:
				return fmt.Errorf("--follow-alias needs an alias to follow: --model %s@ALIAS", m)
			case ref.Alias == "" && f.noFollow:
				return fmt.Errorf("--no-follow pins the version an alias names: --model %s@ALIAS (a version, or no alias, is pinned already)", m)
			case ref.Alias != "":
				f.fillFollow(cmd, &sp)
			}
			if err := f.fillSpec(cmd, &sp, &slipway.Deployment{}); err != nil {
				return err
			}
			if engine != "" {
				sp.Engine = &engine
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.CreateDeployment(cmd.Context(), sp)
			if err != nil {
				return err
			}
			return a.finishDeployment(cmd.Context(), c, d, f, true)
		}),
	}
	cmd.Flags().StringVarP(&model, "model", "m", "", "model to serve: NAME (newest READY version), NAME@ALIAS or NAME:VERSION")
	cmd.Flags().StringVar(&engine, "engine", "", `"external": the replicas are network workers that announce themselves ('slipway deployments replica-spec NAME')`)
	cmd.Flags().BoolVar(&f.followAlias, "follow-alias", false, "roll out to the alias's new version whenever the alias moves (the default with @ALIAS, unless --canary-analysis)")
	cmd.Flags().BoolVar(&f.noFollow, "no-follow", false, "with @ALIAS: pin the version the alias names now; the deployment stays on it when the alias moves")
	cmd.MarkFlagsMutuallyExclusive("follow-alias", "no-follow")
	f.register(cmd, true)
	requireFlags(cmd, "model")
	return cmd
}

// fillFollow sets sp.FollowAlias from --follow-alias or --no-follow; with neither it is not sent, and the
// server's default applies (a spec that names an alias follows it).
func (f *deploymentFlags) fillFollow(cmd *cobra.Command, sp *slipway.DeploymentSpec) {
	switch {
	case f.noFollow:
		sp.FollowAlias = new(false)
	case cmd.Flags().Changed("follow-alias"):
		sp.FollowAlias = &f.followAlias
	}
}

// finishDeployment waits for d unless --no-wait, then prints it; examples adds the curl examples of a
// deployment that became ACTIVE.
func (a *app) finishDeployment(ctx context.Context, c *client.Client, d *slipway.Deployment, f deploymentFlags, examples bool) error {
	if f.noWait {
		if err := a.printDeploymentResult(ctx, c, d, false); err != nil {
			return err
		}
		if !a.jsonOutput() && !settled(d) {
			fmt.Fprintf(a.stderr, "Not waiting: 'slipway deployments get %s' shows its progress.\n", d.Name)
		}
		return nil
	}
	d, err := a.awaitDeployment(ctx, c, d, f.waitTimeout)
	if d != nil {
		if perr := a.printDeploymentResult(ctx, c, d, examples && err == nil); err == nil {
			err = perr
		}
	}
	return err
}

// settled reports whether d is done changing: not CREATING, UPDATING or DELETING.
func settled(d *slipway.Deployment) bool {
	switch d.State {
	case slipway.DeploymentCreating, slipway.DeploymentUpdating, slipway.DeploymentDeleting:
		return false
	}
	return true
}

// awaitDeployment waits until d settles, showing its progress on stderr when that is a terminal. It returns
// the last state seen and an error unless that state is ACTIVE without a reason (an ACTIVE deployment with
// a reason is one whose update was rejected: the previous version still serves).
func (a *app) awaitDeployment(ctx context.Context, c *client.Client, d *slipway.Deployment, timeout time.Duration) (*slipway.Deployment, error) {
	if !settled(d) {
		spin := a.newBar(-1, progressbar.OptionSetDescription(progressLine(d)), progressbar.OptionSpinnerType(14),
			progressbar.OptionSetElapsedTime(true), progressbar.OptionSetRenderBlankState(true))
		wctx, cancel := context.WithTimeout(ctx, timeout)
		last, err := c.WaitDeployment(wctx, d.Name, func(d *slipway.Deployment) bool {
			spin.describe(progressLine(d))
			return settled(d)
		}, a.pollInterval())
		cancel()
		spin.finish()
		if last != nil {
			d = last
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return d, fmt.Errorf("deployment %s is still %s after %s (%s): it carries on on the server; 'slipway deployments get %s' shows its progress",
				d.Name, d.State, timeout, readiness(d), d.Name)
		} else if err != nil {
			return d, err
		}
	}
	switch {
	case d.State == slipway.DeploymentActive && d.Reason == "":
		return d, nil
	case d.Reason != "":
		reason, more := firstLine(d.Reason)
		if more {
			reason += " (the full reason is above)"
		}
		return d, fmt.Errorf("deployment %s is %s: %s", d.Name, d.State, reason)
	}
	return d, fmt.Errorf("deployment %s is %s", d.Name, d.State)
}

func (a *app) pollInterval() time.Duration {
	if a.poll > 0 {
		return a.poll
	}
	return defaultPoll
}

// readyReplicas counts the replicas serving the deployment's version.
func readyReplicas(d *slipway.Deployment) int {
	n := 0
	for _, r := range d.ReplicaStatus {
		if r.State == "READY" && r.Version == d.Version {
			n++
		}
	}
	return n
}

func readiness(d *slipway.Deployment) string {
	return fmt.Sprintf("%d/%d replicas of version %d ready", readyReplicas(d), d.Replicas, d.Version)
}

func progressLine(d *slipway.Deployment) string {
	return fmt.Sprintf("%s %s: %s", d.Name, d.State, readiness(d))
}

// printDeploymentResult prints d as -o asks; examples adds how to call it.
func (a *app) printDeploymentResult(ctx context.Context, c *client.Client, d *slipway.Deployment, examples bool) error {
	return show(a, d, nil, func(d *slipway.Deployment) {
		a.printDeployment(d)
		if examples {
			var v *slipway.ModelVersion
			if d.Version > 0 {
				v, _ = c.GetVersion(ctx, d.Model, strconv.Itoa(d.Version)) // only to make the examples concrete
			}
			fmt.Fprintln(a.stdout)
			a.printExamples(d, v)
		}
	})
}

// absURL makes a server-relative path absolute on --url.
func (a *app) absURL(path string) string {
	return strings.TrimRight(a.url, "/") + path
}

// aliasState says how d relates to the alias it was deployed by: it follows it, or it is pinned to the
// version the alias named then (the alias may have moved since).
func aliasState(d *slipway.Deployment) string {
	if d.FollowAlias {
		return "@" + d.Alias + ", followed"
	}
	return "pinned, from @" + d.Alias
}

// printDeployment shows a deployment's configuration, state, URLs and replicas.
func (a *app) printDeployment(d *slipway.Deployment) {
	tw := newTable(a.stdout)
	row(tw, "Name:", d.Name)
	row(tw, "State:", d.State)
	reason, longReason := firstLine(d.Reason)
	if reason != "" {
		row(tw, "Reason:", reason)
	}
	version := fmt.Sprintf("%s version %d", d.Model, d.Version)
	if d.Alias != "" {
		version += " (" + aliasState(d) + ")"
	}
	row(tw, "Model:", version)
	row(tw, "Replicas:", fmt.Sprintf("%d (%d ready)", d.Replicas, readyReplicas(d)))
	printAutoscaling(tw, d)
	if c := d.Canary; c != nil {
		row(tw, "Canary:", fmt.Sprintf("version %d takes %d%% of the requests on %d replica(s)", c.Version, c.Weight, c.Replicas))
		if a := c.Analysis; a != nil {
			latency := ""
			if a.MaxLatencyRatio > 0 {
				latency = fmt.Sprintf(", p99 ≤ %g × the version's", a.MaxLatencyRatio)
			}
			row(tw, "Canary analysis:", fmt.Sprintf("every %ds with ≥ %d requests: 5xx ≤ %g%%%s; promoted after %d passed, removed at the first failed",
				a.IntervalSeconds, a.MinRequests, 100*a.MaxErrorRate, latency, a.PromoteAfter))
		}
	}
	if sh := d.Shadow; sh != nil {
		what := "its answers are dropped"
		if sh.Compare {
			what = "its answers are compared: slipway deployments shadow " + d.Name
		}
		row(tw, "Shadow:", fmt.Sprintf("version %d gets a copy of every request on %d replica(s); %s", sh.Version, sh.Replicas, what))
	}
	if h := d.Holdout; h != nil {
		row(tw, "Holdout:", fmt.Sprintf("%g%% of the requests (Slipway-Holdout: true); performance is reported apart for them", 100*h.Share))
	}
	row(tw, "Batching:", formatBatching(d.Batching))
	row(tw, "Timeout:", fmt.Sprintf("%d ms", d.TimeoutMS))
	row(tw, "Max queue:", d.MaxQueue)
	if len(d.Env) > 0 {
		// Names only: values may be secrets (-o json shows them).
		row(tw, "Env:", strings.Join(slices.Sorted(maps.Keys(d.Env)), ", "))
	}
	row(tw, "Created:", formatTime(d.CreatedAt))
	row(tw, "Updated:", formatTime(d.UpdatedAt))
	if u := d.URLs; u != nil {
		row(tw, "Predict URL:", a.absURL(u.Predict))
		row(tw, "Invocations URL:", a.absURL(u.Invocations))
		row(tw, "V2 infer URL:", a.absURL(u.V2Infer))
	}
	tw.Flush()
	if longReason {
		// A replica's traceback: in full, below the table it would break.
		fmt.Fprintln(a.stdout, "\nReason in full:")
		for line := range strings.Lines(strings.TrimSpace(d.Reason)) {
			fmt.Fprintln(a.stdout, "  "+strings.TrimRight(line, "\r\n"))
		}
	}
	a.printReplicas(d.ReplicaStatus)
}

// firstLine returns the first non-empty line of s, trimmed, and whether s has more than that line.
func firstLine(s string) (string, bool) {
	s = strings.TrimSpace(s)
	first, rest, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(first), strings.TrimSpace(rest) != ""
}

// lastErrorSummary fits a replica's last error in a table cell: its first line, at most 100 characters.
func lastErrorSummary(s string) string {
	line, more := firstLine(s)
	if r := []rune(line); len(r) > 100 {
		line, more = string(r[:99]), true
	}
	if more {
		line += "…"
	}
	return line
}

func formatBatching(b *slipway.Batching) string {
	if !b.Enabled() {
		return "off"
	}
	return fmt.Sprintf("up to %d requests, waiting at most %d ms", b.MaxBatchSize, b.MaxWaitMS)
}

func (a *app) printReplicas(rs []slipway.ReplicaStatus) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(a.stdout)
	tw := newTable(a.stdout)
	row(tw, "ID", "VERSION", "STATE", "PID", "RESTARTS", "IN FLIGHT", "LAST ERROR")
	for _, r := range rs {
		pid := ""
		if r.PID > 0 {
			pid = strconv.Itoa(r.PID)
		}
		row(tw, r.ID, r.Version, r.State, pid, r.Restarts, r.InFlight, lastErrorSummary(r.LastError))
	}
	tw.Flush()
}

// printExamples shows how to call the three prediction protocols with curl. With the version's metadata the
// bodies are real: its sample_input for predict, one row built from its input schema for the others.
func (a *app) printExamples(d *slipway.Deployment, v *slipway.ModelVersion) {
	if d.URLs == nil {
		return
	}
	predictBody, mlflowBody, v2Body := "@input.json", `'{"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}'`,
		`'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}'`
	if v != nil {
		if s := compactJSON(v.SampleInput); s != "" && len(s) <= 500 {
			predictBody = shellQuote(s)
		}
		if m, v2, ok := schemaExamples(v.InputSchema); ok {
			mlflowBody, v2Body = shellQuote(m), shellQuote(v2)
		}
	}
	auth := `-H "Authorization: Bearer $SLIPWAY_TOKEN" -H "Content-Type: application/json"`
	w := a.stdout
	fmt.Fprintln(w, "Try it (with a token of role predict, editor or admin in $SLIPWAY_TOKEN):")
	fmt.Fprintln(w, "\n  # OCI-style: the body goes to the model's predict() as is")
	fmt.Fprintf(w, "  curl -X POST %s \\\n    %s \\\n    -d %s\n", a.absURL(d.URLs.Predict), auth, predictBody)
	fmt.Fprintln(w, "\n  # MLflow scoring: dataframe_split, dataframe_records, instances or inputs (or -H \"Content-Type: text/csv\")")
	fmt.Fprintf(w, "  curl -X POST %s \\\n    %s \\\n    -d %s\n", a.absURL(d.URLs.Invocations), auth, mlflowBody)
	fmt.Fprintln(w, "\n  # Open Inference Protocol v2 (KServe, Triton clients)")
	fmt.Fprintf(w, "  curl -X POST %s \\\n    %s \\\n    -d %s\n", a.absURL(d.URLs.V2Infer), auth, v2Body)
	fmt.Fprintf(w, "\n  # or: slipway predict %s --data input.json\n", d.Name)
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	b, err := json.Marshal(raw) // compacts
	if err != nil {
		return ""
	}
	return string(b)
}

// v2Datatypes maps schema dtypes to OIP v2 datatypes.
var v2Datatypes = map[string]string{"float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32",
	"bool": "BOOL", "string": "BYTES"}

// schemaExamples builds one-row MLflow and OIP v2 bodies from an input schema, with a plausible value per
// column (its first allowed value, its minimum, or zero): a tabular schema gives an MLflow dataframe_split,
// one with tensor columns (a shape) gives MLflow "inputs" with one row per tensor. ok is false for schemas it
// cannot express (unknown dtypes, tensors of more than 64 elements per row).
func schemaExamples(s *slipway.Schema) (mlflow, v2 string, ok bool) {
	if s == nil || len(s.Columns) == 0 {
		return "", "", false
	}
	type v2Input struct {
		Name     string  `json:"name"`
		Shape    []int64 `json:"shape"`
		Datatype string  `json:"datatype"`
		Data     []any   `json:"data"`
	}
	var names []string
	var row []any
	tensors := map[string]any{}
	tabular := true
	var inputs []v2Input
	for _, c := range s.Columns {
		dt, known := v2Datatypes[c.Dtype]
		if !known {
			return "", "", false
		}
		var val any
		switch {
		case len(c.Allowed) > 0:
			val = c.Allowed[0]
		case c.Min != nil:
			val = *c.Min
		case c.Dtype == "string":
			val = ""
		case c.Dtype == "bool":
			val = false
		default:
			val = 0
		}
		shape := []int64{1}
		if len(c.Shape) > 0 {
			tabular = false
			shape = make([]int64, len(c.Shape))
			for i, d := range c.Shape {
				shape[i] = max(d, 1) // one row for the variable dimension
			}
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
			if n > 64 {
				return "", "", false
			}
		}
		names = append(names, c.Name)
		row = append(row, val)
		tensors[c.Name] = nested(shape, val)
		inputs = append(inputs, v2Input{Name: c.Name, Shape: shape, Datatype: dt, Data: slices.Repeat([]any{val}, int(n))})
	}
	var body any = map[string]any{"inputs": tensors}
	if tabular {
		body = map[string]any{"dataframe_split": map[string]any{"columns": names, "data": [][]any{row}}}
	}
	m, err1 := json.Marshal(body)
	i, err2 := json.Marshal(map[string]any{"inputs": inputs})
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	return string(m), string(i), true
}

// nested returns val repeated in nested lists of the given shape.
func nested(shape []int64, val any) any {
	if len(shape) == 0 {
		return val
	}
	out := make([]any, shape[0])
	for i := range out {
		out[i] = nested(shape[1:], val)
	}
	return out
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (a *app) deploymentsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "deployments",
		Aliases: []string{"deployment"},
		Short:   "List, inspect, update, activate, deactivate and delete deployments",
		Long: `List, inspect, update, activate, deactivate and delete deployments ('slipway deploy' creates them).

States: CREATING → ACTIVE; UPDATING while a change rolls out (the previous replicas serve until the new
ones are ready); INACTIVE when deactivated; FAILED when the replicas could not start; NEEDS_ATTENTION when
replicas keep crashing.`,
	}
	cmd.AddCommand(a.deploymentsListCommand(), a.deploymentsGetCommand(), a.deploymentsUpdateCommand(),
		a.deploymentsActivateCommand(), a.deploymentsDeactivateCommand(), a.deploymentsDeleteCommand(),
		a.deploymentsReplicaSpecCommand(), a.deploymentsShadowCommand())
	return cmd
}

func (a *app) deploymentsListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List deployments",
		Args:    exactArgs(0, "no arguments"),
		RunE: a.runWithClient(func(cmd *cobra.Command, args []string, c *client.Client) error {
			ds, err := c.ListDeployments(cmd.Context())
			return showAll(a, ds, err, []any{"NAME", "STATE", "MODEL", "VERSION", "ALIAS", "REPLICAS", "UPDATED"},
				func(d *slipway.Deployment) []any {
					alias := d.Alias
					switch {
					case alias != "" && d.FollowAlias:
						alias += " (followed)"
					case alias != "":
						alias += " (pinned)"
					}
					return []any{d.Name, d.State, d.Model, d.Version, alias, fmt.Sprintf("%d/%d", readyReplicas(d), d.Replicas),
						formatTime(d.UpdatedAt)}
				})
		}),
	}
}

// deploymentCommand is a command "use NAME" whose only argument is a deployment name: it checks the name and
// connects before calling fn.
func (a *app) deploymentCommand(use, short string, fn func(cmd *cobra.Command, c *client.Client, name string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " NAME",
		Short: short,
		Args:  exactArgs(1, "one deployment name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := a.namedClient("deployment", args[0])
			if err != nil {
				return err
			}
			return fn(cmd, c, args[0])
		}),
	}
}

func (a *app) deploymentsGetCommand() *cobra.Command {
	return a.deploymentCommand("get", "Show a deployment: its configuration, state, URLs and replicas",
		func(cmd *cobra.Command, c *client.Client, name string) error {
			d, err := c.GetDeployment(cmd.Context(), name)
			return show(a, d, err, a.printDeployment)
		})
}

func (a *app) deploymentsUpdateCommand() *cobra.Command {
	var version int
	var alias string
	var f deploymentFlags
	cmd := &cobra.Command{
		Use:   "update NAME [--model-version N | --alias ALIAS] [flags]",
		Short: "Change a deployment: roll out another version, scale, tune batching, timeout, queue or env",
		Long: `Change a deployment; only the flags given change. A new version (or --env, which replaces the whole
environment) rolls out a new set of replicas: the current ones keep serving until all the new ones are
ready, and if the new ones fail the current ones stay and the command exits 1 with the reason. Scaling,
batching, timeout and queue changes apply in place. --batch-size 0 turns batching off.

A canary (--canary-version) is another version on replicas of its own that takes --canary-weight percent
of the requests; a shadow (--shadow-version) gets a copy of every request and its answers are dropped.
Both start beside the deployment; if one cannot start, the deployment serves on and the command exits 1
with the reason. Promote a canary with --model-version N --no-canary, or let the server do it:
--canary-analysis (or any --canary-interval, --canary-min-requests, --canary-max-error-rate,
--canary-max-latency-ratio, --canary-promote-after) judges the canary every interval by its 5xx share
and p99 latency against the deployment's version, removes it at the first failed interval and promotes
it after --canary-promote-after passed ones (docs/deployments.md).

--alias rolls out the version the alias names and follows the alias from then on (--no-follow: stays on
that version; so does a deployment with an analysed canary, which the server refuses to make follow with
--follow-alias). --no-follow alone pins the deployment to the version it serves.

The command waits until the change is done unless --no-wait.`,
		Example: `  slipway deployments update churn-api --model-version 4
  slipway deployments update churn-api --alias champion --follow-alias
  slipway deployments update churn-api --replicas 4 --batch-size 0
  slipway deployments update churn-api --canary-version 5 --canary-weight 10   # 10% of the requests to version 5
  slipway deployments update churn-api --model-version 5 --no-canary           # promote it
  slipway deployments update churn-api --canary-version 6 --canary-analysis    # promoted or removed automatically
  slipway deployments update churn-api --shadow-version 6                      # a copy of every request to version 6`,
		Args: exactArgs(1, "one deployment name"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := slipway.ValidateName("deployment", name); err != nil {
				return err
			}
			changed := cmd.Flags().Changed
			var sp slipway.DeploymentSpec
			if changed("model-version") {
				if version < 1 {
					return fmt.Errorf("invalid --model-version %d: versions start at 1", version)
				}
				sp.Version = &version
			}
			if changed("alias") {
				alias = strings.TrimPrefix(alias, "@")
				if err := slipway.ValidateName("alias", alias); err != nil {
					return err
				}
				sp.Alias = &alias
			}
			f.fillFollow(cmd, &sp)
			c, err := a.client()
			if err != nil {
				return err
			}
			var current *slipway.Deployment
			halfBatching := changed("batch-wait-ms") && !changed("batch-size") || changed("batch-size") && !changed("batch-wait-ms") && f.batching().Enabled()
			if halfBatching || anyChanged(cmd, canaryFlags...) && !f.noCanary || anyChanged(cmd, shadowFlags...) && !f.noShadow ||
				anyChanged(cmd, autoscaleFlagNames...) && !f.autoscale.noAutoscaling || anyChanged(cmd, resourceFlagNames...) {
				// Part of the batching, the canary, the shadow, the autoscaling or the resources given: keep the
				// rest as it is.
				if current, err = c.GetDeployment(cmd.Context(), name); err != nil {
					return err
				}
			} else {
				current = &slipway.Deployment{}
			}
			if err := f.fillSpec(cmd, &sp, current); err != nil {
				return err
			}
			if noChange(sp) {
				return errors.New("nothing to change: give --model-version, --alias, --follow-alias, --replicas, --batch-size, --batch-wait-ms, --timeout-ms, --max-queue, --env, --load, --isolation, --cpu, --memory-mb, --holdout, an autoscaling flag, a --canary or a --shadow flag")
			}
			d, err := c.UpdateDeployment(cmd.Context(), name, sp)
			if err != nil {
				return err
			}
			if d.State == slipway.DeploymentInactive { // stored; nothing runs until it is activated
				if err := a.printDeploymentResult(cmd.Context(), c, d, false); err != nil {
					return err
				}
				if !a.jsonOutput() {
					fmt.Fprintf(a.stderr, "Updated; %s is INACTIVE: 'slipway deployments activate %s' starts it.\n", name, name)
				}
				return nil
			}
			return a.finishDeployment(cmd.Context(), c, d, f, false)
		}),
	}
	fs := cmd.Flags()
	fs.IntVar(&version, "model-version", 0, "roll out this version number of the model")
	fs.StringVar(&alias, "alias", "", "roll out the version this alias points at")
	fs.BoolVar(&f.followAlias, "follow-alias", false, "roll out to the alias's new version whenever it moves (the default with --alias, unless the canary is analysed)")
	fs.BoolVar(&f.noFollow, "no-follow", false, "stop following the alias: stay on the version it names now (with --alias: the version that alias names now)")
	f.register(cmd, false)
	cmd.MarkFlagsMutuallyExclusive("model-version", "alias")
	cmd.MarkFlagsMutuallyExclusive("follow-alias", "no-follow")
	return cmd
}

// noChange reports whether sp changes nothing.
func noChange(sp slipway.DeploymentSpec) bool {
	return sp.Version == nil && sp.Alias == nil && sp.FollowAlias == nil && sp.Replicas == nil && sp.Batching == nil &&
		sp.TimeoutMS == nil && sp.MaxQueue == nil && sp.Env == nil && sp.Canary == nil && sp.Shadow == nil &&
		sp.Autoscaling == nil && sp.Load == nil && sp.Isolation == nil && sp.Resources == nil && sp.Holdout == nil
}

func (a *app) deploymentsActivateCommand() *cobra.Command {
	var f deploymentFlags
	cmd := a.deploymentCommand("activate", "Start an INACTIVE or FAILED deployment's replicas again",
		func(cmd *cobra.Command, c *client.Client, name string) error {
			d, err := c.ActivateDeployment(cmd.Context(), name)
			if err != nil {
				return err
			}
			return a.finishDeployment(cmd.Context(), c, d, f, false)
		})
	cmd.Long = "Start an INACTIVE or FAILED deployment's replicas again, at its configured version, and wait until they are ready unless --no-wait."
	f.registerWait(cmd)
	return cmd
}

func (a *app) deploymentsDeactivateCommand() *cobra.Command {
	return a.deploymentCommand("deactivate", "Stop a deployment's replicas, keeping its configuration and URLs",
		func(cmd *cobra.Command, c *client.Client, name string) error {
			d, err := c.DeactivateDeployment(cmd.Context(), name)
			return show(a, d, err, func(d *slipway.Deployment) {
				fmt.Fprintf(a.stdout, "Deployment %s is %s: its replicas are stopped. 'slipway deployments activate %s' starts them again.\n",
					d.Name, d.State, d.Name)
			})
		})
}

func (a *app) deploymentsDeleteCommand() *cobra.Command {
	return a.deploymentCommand("delete", "Stop a deployment's replicas and delete it",
		func(cmd *cobra.Command, c *client.Client, name string) error {
			err := c.DeleteDeployment(cmd.Context(), name)
			return show(a, map[string]any{"deleted": name}, err, func(map[string]any) {
				fmt.Fprintf(a.stdout, "Deleted deployment %s.\n", name)
			})
		})
}
