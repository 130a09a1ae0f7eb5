package main

import (
	"context"
	"log/slog"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/sdnotify"
)

// superviseSystemd runs sdnotify.Supervise with the agent's pipeline counters as progress:
// any of inferences, sensor errors, predict errors or dropped samples growing shows the sample
// and inference loops are alive. The firmware's unit sets WatchdogSec=60; the sample models
// infer every 0.5 s.
func superviseSystemd(ctx context.Context, log *slog.Logger, stats func() agent.Stats) {
	sdnotify.Supervise(ctx, log, func() uint64 {
		s := stats()
		return s.Inferences + s.SensorErrors + s.PredictErrors + s.SamplesDropped
	})
}
