package broker

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// Login rate limiting: a client that keeps failing to log in is refused before its password
// is checked, so guessing device secrets goes nowhere fast and costs the broker no hashing
// (a device secret check is a deliberately slow PBKDF2). Two kinds of keys are tracked:
//
//   - per identity (the username, else the client id): after LoginLimits.IdentityFree
//     consecutive failures, each further failure blocks that identity for a backoff that
//     doubles from Backoff up to MaxBackoff. A success resets it. While an identity is
//     blocked, logins for it are refused from every address that has itself failed a login
//     recently; an address with no failures is still checked, so an attacker who keeps a
//     device's id blocked cannot keep the real device, elsewhere, off the broker.
//   - per remote IP: after LoginLimits.IPFree failures (any identities: guessing many ids),
//     the address is blocked with the same doubling backoff, every login from it refused. A
//     success does not reset it (one valid secret must not buy unlimited guesses), it decays
//     only after Forget without failures. Devices behind one NAT share an address, so its
//     allowance is larger.
//
// Memory is bounded: at most MaxKeys entries of each kind; when full, entries idle for Forget
// are dropped, and if none is, an arbitrary entry is evicted. Refusals are logged at most once
// per LogEvery, with their count.

// LoginLimits tune login rate limiting; zero fields take the defaults below.
type LoginLimits struct {
	// Off disables rate limiting.
	Off          bool
	IdentityFree int           // failures per identity before backoff; default 5
	IPFree       int           // failures per address before backoff; default 30
	Backoff      time.Duration // first block; default 1 s
	MaxBackoff   time.Duration // longest block; default 5 min
	Forget       time.Duration // an entry without failures this long is dropped; default 15 min
	MaxKeys      int           // entries per kind; default 10,000
	LogEvery     time.Duration // at most one refusal log line per this; default 1 min
}

func (l LoginLimits) withDefaults() LoginLimits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.IdentityFree, 5)
	def(&l.IPFree, 30)
	def(&l.MaxKeys, 10_000)
	defD(&l.Backoff, time.Second)
	defD(&l.MaxBackoff, 5*time.Minute)
	defD(&l.Forget, 15*time.Minute)
	defD(&l.LogEvery, time.Minute)
	return l
}

// maxKeyLen bounds the bytes of an identity kept as a key (usernames are not bounded by MQTT
// beyond 64 KiB).
const maxKeyLen = 128

type failures struct {
	n       int       // consecutive failures
	last    time.Time // latest failure
	blocked time.Time // refused until
}

type loginLimiter struct {
	cfg LoginLimits
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	ids     map[string]*failures
	ips     map[string]*failures
	refused int       // since the last log line
	lastLog time.Time // of the last refusal log line
}

func newLoginLimiter(cfg LoginLimits, log *slog.Logger) *loginLimiter {
	if cfg.Off {
		return nil
	}
	return &loginLimiter{cfg: cfg.withDefaults(), log: log, now: time.Now, ids: map[string]*failures{}, ips: map[string]*failures{}}
}

// remoteIP is the address part of a remote "host:port" ("" for none, e.g. inline clients).
func remoteIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

func idKey(id string) string {
	if len(id) > maxKeyLen {
		return id[:maxKeyLen]
	}
	return id
}

// allow reports whether a login for identity from remote may be checked at all, and why not.
func (l *loginLimiter) allow(identity, remote string) (bool, string) {
	if l == nil {
		return true, ""
	}
	ip, id := remoteIP(remote), idKey(identity)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var why string
	if f := l.ips[ip]; f != nil && now.Before(f.blocked) {
		why = "too many failed logins from this address"
	} else if f := l.ids[id]; f != nil && now.Before(f.blocked) && l.ipFailedLocked(ip, now) {
		why = "too many failed logins for this identity"
	}
	if why == "" {
		return true, ""
	}
	l.refused++
	if now.Sub(l.lastLog) >= l.cfg.LogEvery {
		l.log.Warn("broker refused logins: rate limited", "refused", l.refused, "since", l.lastLog.Format(time.RFC3339), "latest_identity", id, "latest_ip", ip, "reason", why)
		l.refused, l.lastLog = 0, now
	}
	return false, why
}

// ipFailedLocked reports whether ip failed a login within Forget.
func (l *loginLimiter) ipFailedLocked(ip string, now time.Time) bool {
	f := l.ips[ip]
	return f != nil && now.Sub(f.last) < l.cfg.Forget
}

// failed records a checked login that failed.
func (l *loginLimiter) failed(identity, remote string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.fail(l.ids, idKey(identity), l.cfg.IdentityFree, now)
	l.fail(l.ips, remoteIP(remote), l.cfg.IPFree, now)
}

func (l *loginLimiter) fail(m map[string]*failures, key string, free int, now time.Time) {
	f := m[key]
	if f != nil && now.Sub(f.last) >= l.cfg.Forget {
		f.n = 0 // a failure long ago starts nothing
	}
	if f == nil {
		l.makeRoom(m, now)
		f = &failures{}
		m[key] = f
	}
	f.n++
	f.last = now
	if over := f.n - free; over > 0 {
		d := l.cfg.Backoff << min(over-1, 30)
		if d > l.cfg.MaxBackoff || d <= 0 {
			d = l.cfg.MaxBackoff
		}
		f.blocked = now.Add(d)
	}
}

// succeeded records a successful login: the identity's failures are forgiven, the address's
// are not (see the package comment above).
func (l *loginLimiter) succeeded(identity string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	delete(l.ids, idKey(identity))
	l.mu.Unlock()
}

// makeRoom keeps m under MaxKeys before an insert: stale entries go first, then any one.
func (l *loginLimiter) makeRoom(m map[string]*failures, now time.Time) {
	if len(m) < l.cfg.MaxKeys {
		return
	}
	for k, f := range m {
		if now.Sub(f.last) >= l.cfg.Forget && !now.Before(f.blocked) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) < l.cfg.MaxKeys {
			break
		}
		delete(m, k)
	}
}

// size is the number of tracked identities and addresses.
func (l *loginLimiter) size() (ids, ips int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids), len(l.ips)
}
