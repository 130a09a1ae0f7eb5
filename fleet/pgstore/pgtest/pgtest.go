// Package pgtest gives tests a real PostgreSQL server and a fresh database per test.
//
// Start uses the server on 127.0.0.1:5432 (trust authentication, user postgres, database test)
// when it answers, or the one OUTPOST_TEST_PG names (a postgres:// URL of a database the
// user may CREATE DATABASE from); otherwise it starts a throwaway cluster with Debian's
// postgresql (initdb and pg_ctl under /usr/lib/postgresql/*/bin) in a temporary directory, on
// a free loopback port, stopped when the test ends. When neither is possible the test fails
// under CI=true and is skipped elsewhere, saying why.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// LocalURL is the machine's own server, used when it answers.
const LocalURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&connect_timeout=2"

// EnvURL names an admin URL to use instead of LocalURL.
const EnvURL = "OUTPOST_TEST_PG"

// Server is a PostgreSQL server the test may create databases on.
type Server struct {
	admin    string // URL of a database to run CREATE/DROP DATABASE from
	template string // database NewDB copies; "" for the server's default (template1)
	// drops are the databases being dropped in the background (see NewDB); Start's cleanup
	// waits for them.
	drops *sync.WaitGroup
}

// Options tune Start.
type Options struct {
	// Throwaway skips the local server and always starts a throwaway cluster (the fallback's
	// own test).
	Throwaway bool
}

// Start returns a server for t (and its subtests). See the package comment.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if !opts.Throwaway {
		admin := os.Getenv(EnvURL)
		if admin == "" {
			admin = LocalURL
		}
		err := ping(admin)
		if err == nil {
			return newServer(t, admin)
		}
		t.Logf("pgtest: %s does not answer (%v); starting a throwaway cluster", redact(admin), err)
	}
	admin, err := throwaway(t)
	if err != nil {
		unavailable(t, err)
	}
	return newServer(t, admin)
}

// newServer registers the wait for background drops; it runs before a throwaway cluster's
// stop, which was registered earlier.
func newServer(t testing.TB, admin string) *Server {
	s := &Server{admin: admin, drops: &sync.WaitGroup{}}
	t.Cleanup(s.drops.Wait)
	return s
}

// Template creates a database for t, runs init on its URL (e.g. to migrate it; init must close
// its connections), and returns a server whose NewDB copies that database instead of an empty
// one: cheaper than running init for every test.
func (s *Server) Template(t testing.TB, init func(url string) error) *Server {
	t.Helper()
	url, name := s.newDB(t)
	if err := init(url); err != nil {
		t.Fatalf("pgtest: initialise template %s: %v", name, err)
	}
	return &Server{admin: s.admin, template: name, drops: s.drops}
}

// unavailable fails the test in CI and skips it elsewhere.
func unavailable(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("no PostgreSQL for this test: %v (install Debian's postgresql, or run a server on 127.0.0.1:5432 with trust auth and a database named test, or set %s)", err, EnvURL)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// NewDB creates a database with a random name for t (empty, or a copy of the Template) and
// returns its URL. It is dropped, with its connections, when t ends: in the background, so
// that a suite of many small tests does not wait for every drop; the test that called Start
// waits for them all.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	url, _ := s.newDB(t)
	return url
}

func (s *Server) newDB(t testing.TB) (url, name string) {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name = "outpost_test_" + hex.EncodeToString(b[:])
	sql := "CREATE DATABASE " + name
	if s.template != "" {
		sql += " TEMPLATE " + s.template
	}
	if err := s.exec(sql); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	s.drops.Add(1)
	t.Cleanup(func() {
		go func() {
			defer s.drops.Done()
			if err := s.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
				// t may have ended: say it on stderr rather than through t.
				fmt.Fprintf(os.Stderr, "pgtest: drop database %s: %v\n", name, err)
			}
		}()
	})
	return s.url(t, name), name
}

func (s *Server) url(t testing.TB, name string) string {
	u, err := neturl.Parse(s.admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func (s *Server) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func ping(admin string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

func redact(s string) string {
	u, err := neturl.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// binDir finds the newest Debian postgresql's binaries.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var ok []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			ok = append(ok, d)
		}
	}
	if len(ok) == 0 {
		return "", errors.New("no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	}
	slices.SortFunc(ok, func(a, b string) int { return versionOf(a) - versionOf(b) })
	return ok[len(ok)-1], nil
}

func versionOf(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// throwaway initialises and starts a cluster in a temporary directory, stopped at t's end,
// and returns the admin URL of its postgres database.
func throwaway(t testing.TB) (string, error) {
	bin, err := binDir()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	// initdb refuses to run as root: run the server as the postgres user Debian's package
	// creates, in a directory it may enter.
	var runAs []string
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			return "", fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		for d := dir; d != filepath.Dir(d) && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				return "", err
			}
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", err
		}
		runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	data := filepath.Join(dir, "data")
	run := func(timeout time.Duration, name string, args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		argv := append(append(slices.Clone(runAs), filepath.Join(bin, name)), args...)
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, lastLines(out))
		}
		return nil
	}
	if err := run(time.Minute, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
	if err := run(time.Minute, "pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "50", "start"); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		if err := run(time.Minute, "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
			t.Errorf("pgtest: stop throwaway cluster: %v", err)
		}
	})
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := ping(admin); err != nil {
		return "", fmt.Errorf("throwaway cluster started but does not answer: %w", err)
	}
	return admin, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte) string {
	const n = 400
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
