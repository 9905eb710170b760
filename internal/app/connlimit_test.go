package app

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestPerClientListenerCapsConnectionsPerAddress(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan string, 10)
	ln := limitPerClient(inner, 2, func(addr string) { refused <- addr })
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() { // owned by the test: ends when the listener closes
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first, second := <-accepted, <-accepted
	third := dial()
	if addr := <-refused; addr != "127.0.0.1" {
		t.Fatalf("refused %q", addr)
	}
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the connection over the cap: read %v, want EOF (closed by the server)", err)
	}
	// Closing one (twice: counted once) frees one slot.
	first.Close()
	first.Close()
	dial()
	fourth := <-accepted
	dial()
	if addr := <-refused; addr != "127.0.0.1" {
		t.Fatalf("refused %q", addr)
	}
	second.Close()
	fourth.Close()
}
