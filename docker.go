package main

import (
	"context"
	"errors"
	"log/slog"
)

func newDocker(ctx context.Context, cfg *config, log *slog.Logger) (scheduler, error) {
	return nil, errors.New("not supported yet")
}
