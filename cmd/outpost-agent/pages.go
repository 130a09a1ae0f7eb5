package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/agent/exepages"
)

// steadyTimeout bounds the wait for the first ack before the second release: a device that
// cannot reach its controller still settles into its loop.
const steadyTimeout = 2 * time.Minute

// releaseStartupPages gives back the pages of the binary that start-up touched
// (agent/exepages): once when the model is loaded, and once more when the whole path has run
// (a result acked by the controller, or steadyTimeout), so that connecting, the first upload
// and the first health report do not leave their one-time pages resident either.
// Best-effort: where it cannot (not Linux, no /proc), the agent runs as before.
func releaseStartupPages(ctx context.Context, log *slog.Logger, stats func() agent.Stats) {
	release := func(when string) {
		st, err := exepages.Release()
		if err != nil {
			log.Debug("start-up pages of the executable kept", "when", when, "err", err)
			return
		}
		log.Debug("start-up pages of the executable released", "when", when, "mappings", st.Mappings,
			"resident_before", st.Before, "resident_after", st.After)
	}
	release("loaded")
	acked := stats().AckedSeq
	deadline := time.NewTimer(steadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			release("timeout")
			return
		case <-tick.C:
			if stats().AckedSeq != acked {
				release("acked")
				return
			}
		}
	}
}
