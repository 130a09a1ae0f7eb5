package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Leader election among controller replicas sharing one database: the leader is the replica
// whose own connection holds a session-level advisory lock. PostgreSQL releases the lock when
// that session ends (the process died, the network or the server dropped it), so a dead
// leader is replaced without anyone having to notice it first, and there is no lease to
// tune against clock skew. The leader checks its session every CheckEvery and stops leading
// as soon as a check fails: at worst the old and the new leader overlap for one CheckEvery
// after a connection loss the old one has not seen yet, so what runs under leadership must
// tolerate that (the rollout engine's desired states carry generations and are idempotent).

// Lock keys used with Elector (distinct from migrationLock).
const (
	// RolloutLeaderKey elects the replica that runs the rollout engine.
	RolloutLeaderKey int64 = 0x6f7574706f7374 + 1
	// AlertLeaderKey elects the replica whose monitor service publishes drift alerts (every
	// replica sees every drift summary; one publishes). A key of its own: the rollout leader
	// holds RolloutLeaderKey on another session, so it could never win that key again here.
	AlertLeaderKey int64 = 0x6f7574706f7374 + 2
)

// Elector campaigns for one advisory lock key and runs a function while it holds it.
type Elector struct {
	// URL is the database's (the store's --store URL).
	URL string
	// Key is the advisory lock key; replicas electing one leader use the same key.
	Key int64
	// CheckEvery is how often a leader checks its session and a follower tries for the lock;
	// default 1s.
	CheckEvery time.Duration
	Logger     *slog.Logger
}

// Run campaigns until ctx ends. Each time it gains the lock it calls lead with a context that
// ends when leadership is lost (or ctx ends), and campaigns again once lead returns. It
// returns nil when ctx ends, or lead's error (the lock is released first).
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	every := e.CheckEvery
	if every <= 0 {
		every = time.Second
	}
	log := e.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(e.URL)
	if err != nil {
		return fmt.Errorf("leader election: bad connection url: %w", errors.Unwrap(err))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var conn *pgx.Conn
	closeConn := func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			conn.Close(cctx) // ends the session: releases the lock if held
			cancel()
			conn = nil
		}
	}
	defer closeConn()
	for {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*every)
			conn, err = pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil {
				conn = nil
				log.Warn("leader election: database unreachable; retrying", "err", oneLine(err))
			}
		}
		if conn != nil {
			won, err := tryLock(ctx, conn, e.Key, every)
			switch {
			case err != nil:
				log.Warn("leader election: lock attempt", "err", oneLine(err))
				closeConn()
			case won:
				log.Info("leader election: this replica leads")
				lost, err := e.lead(ctx, conn, every, lead)
				closeConn() // a fresh session for the next campaign, never a stale one
				if err != nil {
					return err
				}
				if lost {
					log.Warn("leader election: leadership lost (database session ended); stopped leading")
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func tryLock(ctx context.Context, conn *pgx.Conn, key int64, timeout time.Duration) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*timeout)
	defer cancel()
	var won bool
	err := conn.QueryRow(qctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&won)
	return won, err
}

// lead runs fn while conn's session answers; lost reports that the session failed a check.
func (e *Elector) lead(ctx context.Context, conn *pgx.Conn, every time.Duration, fn func(context.Context) error) (lost bool, err error) {
	lctx, cancel := context.WithCancelCause(ctx)
	errLost := errors.New("leadership lost")
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-t.C:
			}
			// The session still answering is the lock still held: only ending the
			// session or an explicit unlock (which this code never issues) releases it.
			pctx, pcancel := context.WithTimeout(lctx, every)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && lctx.Err() == nil {
				cancel(errLost)
				return
			}
		}
	}()
	err = fn(lctx)
	lost = errors.Is(context.Cause(lctx), errLost)
	cancel(nil)
	<-done
	if ctx.Err() != nil || lost {
		err = nil // fn ending because leadership or the process ended is no failure
	}
	return lost, err
}
