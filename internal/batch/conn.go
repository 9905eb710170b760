package batch

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/slipway-ml/slipway"
)

// Database drivers of named connections.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Conn is a named database the server may read queries from and write tables to. Its DSN (with
// credentials) never leaves the server: the API shows Public().
type Conn struct {
	Name   string
	Driver string
	path   string          // sqlite: absolute file path
	pg     *pgx.ConnConfig // postgres

	once sync.Once
	db   *sql.DB
	err  error
}

var connNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]{0,62}[a-z0-9])?$`)

// ConnSpec is one named connection to open: its DSN and where it was given (for error messages: "--connection
// wh", "connection wh (connections file /etc/slipway/connections.yaml, line 3)").
type ConnSpec struct {
	Name, DSN, Origin string
}

// FlagConnSpecs splits --connection NAME=URL values.
func FlagConnSpecs(values []string) ([]ConnSpec, error) {
	specs := make([]ConnSpec, 0, len(values))
	for _, v := range values {
		name, dsn, ok := strings.Cut(v, "=")
		if !ok || name == "" || dsn == "" {
			return nil, fmt.Errorf("--connection %q: use NAME=sqlite:///path/to.db or NAME=postgres://user@host:5432/db", redactValue(v))
		}
		specs = append(specs, ConnSpec{Name: name, DSN: dsn, Origin: "--connection " + name})
	}
	return specs, nil
}

// ParseConnSpecs opens the named connections of the command line and the connections file: each must have a
// valid name, a name given once, and a DSN of a supported database. Errors name the connection's origin.
func ParseConnSpecs(specs []ConnSpec) (map[string]*Conn, error) {
	out := map[string]*Conn{}
	origins := map[string]string{}
	for _, sp := range specs {
		if sp.Origin == "" {
			sp.Origin = "connection " + sp.Name
		}
		if !connNamePattern.MatchString(sp.Name) {
			return nil, fmt.Errorf("%s: invalid name %q: use 1-64 lowercase letters, digits, '_' or '-'", sp.Origin, sp.Name)
		}
		if first, dup := origins[sp.Name]; dup {
			if first == sp.Origin {
				return nil, fmt.Errorf("%s is given twice", sp.Origin)
			}
			return nil, fmt.Errorf("connection %s is given twice: as %s and as %s; keep one", sp.Name, first, sp.Origin)
		}
		c, err := parseConn(sp.Origin, sp.Name, sp.DSN)
		if err != nil {
			return nil, err
		}
		out[sp.Name], origins[sp.Name] = c, sp.Origin
	}
	return out, nil
}

// parseConn reads one DSN; origin prefixes its errors.
func parseConn(origin, name, dsn string) (*Conn, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite://"):
		p := strings.TrimPrefix(dsn, "sqlite://")
		if i := strings.IndexByte(p, '?'); i >= 0 {
			return nil, fmt.Errorf("%s: sqlite URLs take no options (%q): the server sets WAL and a busy timeout itself", origin, p[i:])
		}
		if p == "" || p == "/" {
			return nil, fmt.Errorf("%s: sqlite URL has no path: use sqlite:///absolute/path.db", origin)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", origin, err)
		}
		if st, err := os.Stat(filepath.Dir(abs)); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s: folder %s does not exist (the database file is created on first write, its folder must exist)", origin, filepath.Dir(abs))
		}
		return &Conn{Name: name, Driver: DriverSQLite, path: abs}, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			// pgx's message may quote the URL: keep only its kind.
			return nil, fmt.Errorf("%s: invalid PostgreSQL URL (want postgres://user:password@host:5432/dbname?sslmode=disable): %s", origin, redactValue(err.Error()))
		}
		return &Conn{Name: name, Driver: DriverPostgres, pg: cfg}, nil
	}
	return nil, fmt.Errorf("%s: unsupported database URL %q: use sqlite:///path/to.db or postgres://user:password@host:5432/dbname", origin, redactValue(dsn))
}

var passwordInURL = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)

// redactValue hides the password of any URL in s.
func redactValue(s string) string { return passwordInURL.ReplaceAllString(s, "${1}****@") }

// Public describes the connection without credentials.
func (c *Conn) Public() slipway.Connection {
	if c.Driver == DriverSQLite {
		return slipway.Connection{Name: c.Name, Driver: c.Driver, Database: c.path}
	}
	host := c.pg.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.pg.Port)))
	}
	return slipway.Connection{Name: c.Name, Driver: c.Driver, Database: host + "/" + c.pg.Database}
}

// DB opens the connection's pool on first use.
func (c *Conn) DB() (*sql.DB, error) {
	c.once.Do(func() {
		switch c.Driver {
		case DriverSQLite:
			// WAL lets a query input read while chunks are written to the same file.
			dsn := "file:" + c.path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
			c.db, c.err = sql.Open("sqlite", dsn)
			if c.err == nil {
				c.db.SetMaxOpenConns(8)
			}
		case DriverPostgres:
			c.db = stdlib.OpenDB(*c.pg)
			c.db.SetMaxOpenConns(16)
			c.db.SetMaxIdleConns(4)
		}
	})
	return c.db, c.err
}

// Close closes the pool if it was opened.
func (c *Conn) Close() error {
	if c.db != nil {
		return c.db.Close()
	}
	return nil
}

// ping checks that the database answers, with an error a user can act on.
func (c *Conn) ping(ctx context.Context) error {
	db, err := c.DB()
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		return slipway.Wrap(slipway.EUNAVAILABLE, err, "connection %s (%s %s) does not answer: %s", c.Name, c.Driver, c.Public().Database, redactValue(err.Error()))
	}
	return nil
}

// publicConnections lists connections by name.
func publicConnections(conns map[string]*Conn) []slipway.Connection {
	out := make([]slipway.Connection, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.Public())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
