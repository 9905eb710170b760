package app

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// perClientListener caps the connections open at once from one client address: a client that opens more is
// disconnected at once, before a byte is read, so that one careless or hostile client cannot take every
// connection (and the goroutines and buffers behind them). Behind a load balancer every client has the
// balancer's address: raise the cap (--max-conns-per-client) or set it to 0 there.
type perClientListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[string]int
	// refused counts the connections closed over the cap (for the log).
	refused func(addr string)
}

func limitPerClient(ln net.Listener, max int, refused func(addr string)) net.Listener {
	if max <= 0 {
		return ln
	}
	return &perClientListener{Listener: ln, max: max, open: map[string]int{}, refused: refused}
}

func (l *perClientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientHost(c.RemoteAddr())
		l.mu.Lock()
		over := l.open[host] >= l.max
		if !over {
			l.open[host]++
		}
		l.mu.Unlock()
		if !over {
			return &countedConn{Conn: c, release: func() { l.release(host) }}, nil
		}
		_ = c.Close() // refused: nothing was read or written on it
		if l.refused != nil {
			l.refused(host)
		}
	}
}

func (l *perClientListener) release(host string) {
	l.mu.Lock()
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
	l.mu.Unlock()
}

func clientHost(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// countedConn gives its slot back once, on the first Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// connRefusalLogger logs refused connections at most once every 10 s, with how many there were, so that a
// flood of them cannot flood the log too.
func (a *App) connRefusalLogger() func(addr string) {
	var refused atomic.Int64
	var last atomic.Int64
	return func(addr string) {
		n := refused.Add(1)
		now := time.Now().UnixNano()
		if prev := last.Load(); now-prev >= int64(10*time.Second) && last.CompareAndSwap(prev, now) {
			a.log.Warn("connections refused: too many open from one client address (--max-conns-per-client)",
				"client", addr, "max", a.cfg.MaxConnsPerClient, "refused_since_last_warning", n)
			refused.Add(-n)
		}
	}
}
