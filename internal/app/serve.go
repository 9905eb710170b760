package app

import (
	"context"
	"errors"
	"flag"
	"os"

	"github.com/slipway-ml/slipway/internal/config"
)

// Main is `slipway server`: parse flags, open, serve until the context (SIGINT/SIGTERM) ends.
func Main(ctx context.Context, args []string) error {
	cfg, err := config.Parse(args, config.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	log := NewLogger(cfg.LogFormat, cfg.LogLevel)
	a, err := Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	return a.Run(ctx)
}
