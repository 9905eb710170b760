package e2e

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// dialServer opens a raw TCP connection to s.
func dialServer(t *testing.T, s *server) net.Conn {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c (a read ends with EOF or a reset) within wait.
func closedByServer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

func TestSlowClientsAreCutOff(t *testing.T) {
	s := startServer(t, "", "--read-header-timeout", "1s", "--max-conns-per-client", "3")

	// A slowloris client, one header byte every 300 ms, is disconnected before it finishes.
	slow := dialServer(t, s)
	header := "POST /deployments/any/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + s.Token + "\r\n"
	cut := false
	for i := 0; i < len(header) && !cut; i++ {
		if _, err := slow.Write([]byte{header[i]}); err != nil {
			cut = true
			break
		}
		cut = closedByServer(slow, 300*time.Millisecond)
	}
	if !cut {
		t.Fatalf("a client sending its header at 1 byte per 300 ms was never cut off (--read-header-timeout 1s)")
	}

	// Connections over the cap from one address are closed at once, before the server reads anything.
	var idle []net.Conn
	for range 3 {
		idle = append(idle, dialServer(t, s))
	}
	time.Sleep(100 * time.Millisecond) // the three are accepted first
	over := dialServer(t, s)
	if !closedByServer(over, 5*time.Second) {
		t.Fatal("a fourth connection from one address stayed open with --max-conns-per-client 3")
	}
	// Idle connections that send nothing are cut off by the header timeout, which frees their slots.
	for _, c := range idle {
		if !closedByServer(c, 30*time.Second) {
			t.Fatal("an idle connection that never sent a header was not closed")
		}
	}
	resp, body := s.do(t, http.MethodGet, "/api/v1/whoami", s.Token, nil, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the slots were freed: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(s.Log(), "too many open from one client address") {
		t.Error("the refused connection was not logged")
	}
}
