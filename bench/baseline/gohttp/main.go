// Command gohttp is the ceiling of the Slipway serving benchmark: a bare net/http server that reads the request
// body and answers every request with the same small JSON document. Nothing can serve HTTP on this machine much
// faster with the standard library, so "Slipway req/s divided by this" is the share of the HTTP ceiling that a
// deployment reaches. It prints "addr=http://HOST:PORT" on stderr once listening (-addr 127.0.0.1:0 picks a free
// port) and stops on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// body is shaped like an MLflow scoring response for one row.
var body = []byte(`{"predictions": [0.2718]}` + "\n")

func handler(w http.ResponseWriter, r *http.Request) {
	// The 100-row payload is received, like a real server would. A body that breaks off breaks the
	// connection too, which the load generator counts as a failed request.
	_, _ = io.Copy(io.Discard, r.Body)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body) // a client that hung up has nothing to be told
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "listen address (port 0 picks a free one)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gohttp:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.HandlerFunc(handler), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "gohttp listening addr=http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			fmt.Fprintln(os.Stderr, "gohttp: shutdown:", err)
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "gohttp:", err)
		os.Exit(1)
	}
}
