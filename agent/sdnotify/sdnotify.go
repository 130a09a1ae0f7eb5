// Package sdnotify speaks systemd's notification protocol (sd_notify(3)): "READY=1" once the
// service is up and "WATCHDOG=1" keep-alives, sent as datagrams to the socket systemd names in
// NOTIFY_SOCKET. Without that variable (not under systemd, or no Type=notify) every call is a
// no-op, so the agent needs no mode switch. Standard library only: the agent stays small.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends notifications to one socket.
type Notifier struct {
	addr *net.UnixAddr // nil: not under systemd
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET ("@name" is an abstract socket). It does not
// unset the variable: child processes are not expected.
func FromEnv() (*Notifier, error) {
	p := os.Getenv("NOTIFY_SOCKET")
	if p == "" {
		return &Notifier{}, nil
	}
	if p[0] != '/' && p[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: want an absolute path or @abstract name", p)
	}
	if p[0] == '@' {
		p = "\x00" + p[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: p, Net: "unixgram"}}, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// Notify sends state, e.g. "READY=1" or "WATCHDOG=1\nSTATUS=running". A fresh socket per call
// keeps a Notifier free of state that could break across a systemd restart of the socket.
func (n *Notifier) Notify(state string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// WatchdogInterval returns systemd's watchdog timeout (WatchdogSec=, passed as WATCHDOG_USEC)
// when it applies to this process, and false when no watchdog is set. Keep-alives should go
// out at half of it or more often.
func WatchdogInterval() (time.Duration, bool, error) {
	us := os.Getenv("WATCHDOG_USEC")
	if us == "" {
		return 0, false, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, false, nil // meant for another process
	}
	v, err := strconv.ParseUint(us, 10, 63)
	if err != nil || v == 0 {
		return 0, false, errors.New("WATCHDOG_USEC " + strconv.Quote(us) + ": want a positive number of microseconds")
	}
	return time.Duration(v) * time.Microsecond, true, nil
}

// Supervise tells systemd the service is ready and, when the unit sets WatchdogSec, sends a
// keep-alive at a quarter of the timeout, but only while progress moves: progress returns a
// counter that grows while the service does its work (for the agent: inferences plus sensor
// and predict errors plus dropped samples), so a hung sensor read, a stuck inference or a
// wedged commit stops the pings and systemd restarts the service. The timeout must be longer
// than the time between two increments in normal work. Without NOTIFY_SOCKET it returns at
// once; otherwise when ctx ends, after sending STOPPING=1.
func Supervise(ctx context.Context, log *slog.Logger, progress func() uint64) {
	n, err := FromEnv()
	if err != nil {
		log.Warn("systemd notification disabled", "err", err)
		return
	}
	if !n.Enabled() {
		return
	}
	if err := n.Notify("READY=1"); err != nil {
		log.Warn("systemd notification failed", "err", err)
	}
	timeout, ok, err := WatchdogInterval()
	if err != nil {
		log.Warn("systemd watchdog disabled", "err", err)
	}
	if !ok {
		return
	}
	last, lastMoved := progress(), time.Now()
	tick := time.NewTicker(timeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = n.Notify("STOPPING=1")
			return
		case now := <-tick.C:
			if p := progress(); p != last {
				last, lastMoved = p, now
			}
			// Ping while the pipeline moved within half the timeout; after that withhold the
			// pings and let systemd's own timeout decide.
			if now.Sub(lastMoved) < timeout/2 {
				if err := n.Notify("WATCHDOG=1"); err != nil {
					log.Warn("systemd watchdog ping failed", "err", err)
				}
			} else {
				log.Error("pipeline stalled: withholding the systemd watchdog ping", "stalled_for", now.Sub(lastMoved).Round(time.Second))
			}
		}
	}
}
