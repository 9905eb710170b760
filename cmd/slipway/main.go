// Command slipway is the whole product: `slipway server`, `slipway worker` (model replica processes) and the CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/slipway-ml/slipway/internal/app"
	"github.com/slipway-ml/slipway/internal/cli"
	"github.com/slipway-ml/slipway/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr, cli.Hooks{Server: app.Main, Worker: worker.Main, CopyDatabase: app.CopyDatabase})
	stop()
	os.Exit(code)
}
