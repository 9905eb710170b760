package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestServeAnswersEachRequest sends two requests in one write (a body, then none) and reads two answers with
// net/http's parser; a request with a bad Content-Length closes the connection without an answer.
func TestServeAnswersEachRequest(t *testing.T) {
	client, server := net.Pipe()
	go serve(server)
	defer client.Close()

	reqs := "POST /invocations HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello" +
		"GET /other HTTP/1.1\r\nHost: x\r\n\r\n"
	go func() { _, _ = io.WriteString(client, reqs) }()
	r := bufio.NewReader(client)
	for i := range 2 {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(got) != string(body) || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("answer %d: %d %q %v %v", i, resp.StatusCode, got, resp.Header, err)
		}
	}

	go func() { _, _ = io.WriteString(client, "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") }()
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("after a bad Content-Length: %q, %v; want the connection closed", b, err)
	}
}

func TestReadRequestContentLength(t *testing.T) {
	tests := []struct {
		head    string
		want    int
		wantErr bool
	}{
		{"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n", 42, false},
		{"POST / HTTP/1.1\r\nCONTENT-LENGTH:7\r\n\r\n", 7, false},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, false},
		{"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 0, true},
		{"POST / HTTP/1.1\r\nContent-Length: 3\r\n", 0, true}, // ends before the blank line
	}
	for _, tt := range tests {
		n, err := readRequest(bufio.NewReader(strings.NewReader(tt.head)))
		if n != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("%q: %d, %v; want %d, error %v", tt.head, n, err, tt.want, tt.wantErr)
		}
	}
}
