// Command rawhttp is a measuring stick, not a server: the least an HTTP/1.1 server can do per request on this
// machine. One goroutine per connection reads the request line and headers, skips a Content-Length body and
// answers the same small JSON document as bench/baseline/gohttp, with no timeouts, no chunked bodies, no limits
// and nothing else a server facing clients needs. "gohttp's CPU per request minus this one's" is what net/http
// itself costs (docs/benchmarks.md, "A cheaper HTTP layer, measured as a bound"). It prints
// "addr=http://HOST:PORT" on stderr once listening and stops on SIGINT/SIGTERM.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// body is gohttp's answer, so that both send the same bytes.
var body = []byte(`{"predictions": [0.2718]}` + "\n")

var (
	answer       = []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
	lengthHeader = []byte("content-length:")
)

// serve answers the requests of one connection in order until it fails or closes.
func serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	w := bufio.NewWriterSize(c, 4096)
	for {
		n, err := readRequest(r)
		if err != nil {
			return
		}
		if _, err := r.Discard(n); err != nil {
			return
		}
		if _, err := w.Write(answer); err != nil {
			return
		}
		if r.Buffered() == 0 { // answers to pipelined requests go out together
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// readRequest reads a request line and its headers and returns the body's Content-Length (0 without one).
func readRequest(r *bufio.Reader) (int, error) {
	if _, err := r.ReadSlice('\n'); err != nil {
		return 0, err
	}
	n := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return n, nil
		}
		if len(line) > len(lengthHeader) && bytes.EqualFold(line[:len(lengthHeader)], lengthHeader) {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(line[len(lengthHeader):]))); err != nil || n < 0 {
				return 0, fmt.Errorf("bad Content-Length %q", bytes.TrimSpace(line))
			}
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8098", "listen address (port 0 picks a free one)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawhttp:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "rawhttp listening addr=http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = ln.Close() // ends Accept below; open connections end with the process
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "rawhttp:", err)
				os.Exit(1)
			}
			return
		}
		go serve(c)
	}
}
