// Package slipwaytest holds test helpers shared by Slipway's packages: real components started by the tests
// themselves, never mocks of them.
package slipwaytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Postgres is a throwaway PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 (a free port)
// and on a unix socket in that folder, with trust authentication for the user postgres.
type Postgres struct {
	Dir  string // holds data/, sock/ and server.log
	Port int
	bin  string
	asPG bool // commands run as the postgres user (the tests run as root)
}

// PostgresBinDir finds the server binaries of Debian's packages (/usr/lib/postgresql/N/bin), preferring
// version 15, else the newest; "" when none is installed. SLIPWAY_PG_BIN overrides it.
func PostgresBinDir() string {
	if d := os.Getenv("SLIPWAY_PG_BIN"); d != "" {
		return d
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return ""
	}
	sort.Slice(found, func(i, j int) bool { return pgVersion(found[i]) > pgVersion(found[j]) })
	for _, f := range found {
		if pgVersion(f) == 15 {
			return filepath.Dir(f)
		}
	}
	return filepath.Dir(found[0])
}

func pgVersion(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// StartPostgres starts a cluster for the test and stops it (and removes its folder) at cleanup. It skips the
// test only when the PostgreSQL server binaries are not installed.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	if PostgresBinDir() == "" {
		tb.Skip(postgresMissing)
	}
	p, err := NewPostgres()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// Leftovers cost only disk space, not the test's verdict: say so and go on.
		if err := p.Close(); err != nil {
			tb.Logf("%v", err)
		}
	})
	return p
}

const postgresMissing = "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): install the postgresql package (scripts/install-deps.sh) to run this test"

// NewPostgres starts a cluster that outlives any one test: a TestMain's, shared by a package's tests (each in
// its own database), which is much faster than a cluster per test. Close stops it.
func NewPostgres() (*Postgres, error) {
	bin := PostgresBinDir()
	if bin == "" {
		return nil, errors.New(postgresMissing)
	}
	dir, err := os.MkdirTemp("", "slipway-pg-")
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: dir, bin: bin, asPG: os.Geteuid() == 0}
	if err := p.start(); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

// Close stops the cluster and removes its folder.
func (p *Postgres) Close() error {
	var errs []error
	if err := p.stop(); err != nil {
		errs = append(errs, fmt.Errorf("stop the test cluster: %w", err))
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove the test cluster's folder: %w", err))
	}
	return errors.Join(errs...)
}

func (p *Postgres) start() error {
	if p.asPG {
		// initdb refuses to run as root: the cluster belongs to the postgres user.
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root, the test cluster must belong to the postgres user, which does not exist: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(p.Dir, uid, gid); err != nil {
			return err
		}
		if err := os.Chmod(p.Dir, 0o755); err != nil {
			return err
		}
	}
	if out, err := p.command("initdb", "-D", p.data(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if out, err := p.command("mkdir", "-p", p.sock()).CombinedOutput(); err != nil {
		return fmt.Errorf("create socket folder: %w\n%s", err, out)
	}
	// Pick a port by trying: another process may take any port we pick, so a failed bind means try another.
	for attempt := 0; ; attempt++ {
		p.Port = 20000 + rand.IntN(40000)
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
			p.Port, p.sock())
		out, err := p.command(filepath.Join(p.bin, "pg_ctl"), "-D", p.data(), "-o", opts, "-l", p.logFile(), "-w", "-t", "60", "start").CombinedOutput()
		if err == nil {
			return nil
		}
		log, _ := os.ReadFile(p.logFile())
		if attempt < 20 && (bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("already in use"))) {
			if err := os.Truncate(p.logFile(), 0); err != nil { // the next attempt is judged by its own lines only
				return err
			}
			continue
		}
		p.Port = 0 // not running: nothing to stop
		return fmt.Errorf("start PostgreSQL: %w\n%s\nserver log:\n%s", err, out, tail(log, 20))
	}
}

func (p *Postgres) data() string    { return filepath.Join(p.Dir, "data") }
func (p *Postgres) sock() string    { return filepath.Join(p.Dir, "sock") }
func (p *Postgres) logFile() string { return filepath.Join(p.Dir, "server.log") }

// command runs a cluster command, as the postgres user when the tests run as root.
func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	if !strings.Contains(name, "/") && name != "mkdir" {
		name = filepath.Join(p.bin, name)
	}
	if p.asPG {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func (p *Postgres) stop() error {
	if p.Port == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := p.command(filepath.Join(p.bin, "pg_ctl"), "-D", p.data(), "-m", "immediate", "-w", "stop")
	return exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...).Run()
}

// DSN is a postgres:// URL of database db on the cluster, over TCP.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// CreateDatabase creates a database (one per test keeps tests independent) and returns its DSN.
func (p *Postgres) CreateDatabase(tb testing.TB, name string) string {
	tb.Helper()
	out, err := p.command("psql", "-h", p.sock(), "-p", strconv.Itoa(p.Port), "-U", "postgres", "-d", "postgres",
		"-v", "ON_ERROR_STOP=1", "-c", fmt.Sprintf(`CREATE DATABASE "%s"`, name)).CombinedOutput()
	if err != nil {
		tb.Fatalf("create database %s: %v\n%s", name, err, out)
	}
	return p.DSN(name)
}

// Psql runs SQL with psql on database db and returns its unaligned, tuples-only output.
func (p *Postgres) Psql(tb testing.TB, db, sql string) string {
	tb.Helper()
	out, err := p.command("psql", "-h", p.sock(), "-p", strconv.Itoa(p.Port), "-U", "postgres", "-d", db,
		"-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql).CombinedOutput()
	if err != nil {
		tb.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
