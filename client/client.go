// Package client is the Go client of Slipway's REST API (/api/v1). The CLI, the end-to-end tests and users'
// programs drive the server through it. Every call takes a context, sends the bearer token and returns an
// *Error for any non-2xx answer.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-ml/slipway"
	"github.com/slipway-ml/slipway/internal/certpool"
)

// Version is the version reported in the User-Agent header ("slipway-cli/<Version>") and by `slipway
// version`. Release builds set it with -ldflags "-X github.com/slipway-ml/slipway/client.Version=v1.2.3".
var Version = "dev"

// Client calls one Slipway server. It is safe for concurrent use.
type Client struct {
	base      string // scheme://host[/prefix], without a trailing slash
	token     string
	project   string // sent as the Slipway-Project header ("" = none: the token's only project, else default)
	http      *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc (timeouts, proxies, TLS, test transports).
// Prefer contexts to hc.Timeout: uploads and downloads of large artifacts can take minutes.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// HTTPClientTrusting returns an HTTP client that trusts the certificates of a PEM file besides the system's
// (a server with a self-signed certificate or one from a private CA): pass it to WithHTTPClient.
func HTTPClientTrusting(caFile string) (*http.Client, error) {
	pool, err := certpool.WithPEMFile(caFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

// WithProject makes every call work in project (the Slipway-Project header): what it lists, where it creates.
// Without it, calls work in the token's only project, else in "default".
func WithProject(project string) Option {
	return func(c *Client) { c.project = project }
}

// WithUserAgent replaces the default "slipway-cli/<Version>" User-Agent.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client of the server at baseURL (for example "http://127.0.0.1:8080") that authenticates
// with token. An empty token sends no Authorization header (only public routes will answer).
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{
		base:      strings.TrimRight(baseURL, "/"),
		token:     token,
		http:      &http.Client{},
		userAgent: "slipway-cli/" + Version,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Problem is an RFC 9457 problem details body, as the server writes it.
type Problem = slipway.Problem

// Error is returned for every non-2xx response. When the body is not problem+json (a proxy's HTML page, an
// empty body) Problem is filled from the status and the start of the body; an Open Inference Protocol v2
// error body ({"error": "message"}) gives the Detail, with the Code taken from the status.
type Error struct {
	Status  int
	Problem Problem
	// RetryAfter is the Retry-After header of a 429 or 503 answer (0 when absent): how long to wait
	// before sending the request again.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Problem.Code, e.Problem.Detail)
}

// Unwrap exposes the problem as a *slipway.Error, so that slipway.ErrorCode(err) gives the server's code
// (slipway.ENOTFOUND, slipway.ECONFLICT...) for errors returned by the client.
func (e *Error) Unwrap() error {
	return &slipway.Error{Code: e.Problem.Code, Message: e.Problem.Detail}
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// responseError builds the *Error of a non-2xx response, falling back gracefully when the body is not a
// problem document.
func responseError(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{Status: resp.StatusCode}
	var p struct {
		Problem
		V2Error string `json:"error"` // the OIP v2 error body
	}
	if err := json.Unmarshal(body, &p); err == nil {
		switch {
		case p.Detail != "" || p.Code != "":
			e.Problem = p.Problem
		case p.V2Error != "":
			e.Problem.Detail = p.V2Error
		}
	}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	if e.Problem.Status == 0 {
		e.Problem.Status = resp.StatusCode
	}
	if e.Problem.Title == "" {
		e.Problem.Title = http.StatusText(resp.StatusCode)
	}
	if e.Problem.Code == "" {
		e.Problem.Code = slipway.ProblemCode(resp.StatusCode)
	}
	if e.Problem.Detail == "" {
		e.Problem.Detail = fallbackDetail(resp, body)
	}
	if e.Problem.RequestID == "" {
		e.Problem.RequestID = resp.Header.Get("X-Request-Id")
	}
	return e
}

func fallbackDetail(resp *http.Response, body []byte) string {
	text := strings.Join(strings.Fields(string(body)), " ")
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	switch {
	case text == "":
		text = http.StatusText(resp.StatusCode)
	case ct == "text/html":
		text = http.StatusText(resp.StatusCode) + " (HTML page: is --url a Slipway server?)"
	}
	return fmt.Sprintf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, text)
}

// apiPath joins escaped path segments under /api/v1.
func apiPath(segments ...string) string {
	var b strings.Builder
	b.WriteString("/api/v1")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// newRequest builds a request with the client's headers.
func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.project != "" {
		req.Header.Set(slipway.ProjectHeader, c.project)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json, application/problem+json")
	return req, nil
}

// send performs req and returns the response if it is 2xx; otherwise it reads the body into an *Error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp, nil
}

// call is do for a call that answers one JSON object.
func call[T any](ctx context.Context, c *Client, method, path string, query url.Values, in any) (*T, error) {
	var out T
	if err := c.do(ctx, method, path, query, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// items calls the API and returns the items of the page envelope it answers.
func items[T any](ctx context.Context, c *Client, method, path string, query url.Values) ([]T, error) {
	p, err := call[slipway.Page[T]](ctx, c, method, path, query, nil)
	if err != nil {
		return nil, err
	}
	return p.Items, nil
}

// itemsAndTotal GETs a page envelope and returns its items and the total number the server counted.
func itemsAndTotal[T any](ctx context.Context, c *Client, path string, query url.Values) ([]T, int, error) {
	p, err := call[slipway.Page[T]](ctx, c, http.MethodGet, path, query, nil)
	if err != nil {
		return nil, 0, err
	}
	return p.Items, p.Total, nil
}

// do sends a JSON request (in may be nil) and decodes a JSON response into out (may be nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	contentType := ""
	if in != nil {
		contentType = "application/json"
	}
	return c.doRaw(ctx, method, path, query, body, contentType, out)
}

// doRaw is do for a body that is not JSON: it sends body as contentType ("" for none) and decodes the JSON
// answer into out.
func (c *Client) doRaw(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string, out any) error {
	resp, err := c.request(ctx, method, path, query, body, contentType, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeResponse(resp, out)
}

// open GETs path and returns the body of the answer, which the caller closes. accept replaces the default
// Accept header (JSON or a problem) when not empty.
func (c *Client) open(ctx context.Context, path string, query url.Values, accept string) (io.ReadCloser, error) {
	resp, err := c.request(ctx, http.MethodGet, path, query, nil, "", accept)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// request sends a request with body of contentType (both may be empty) and returns the 2xx response; accept,
// when not empty, replaces the default Accept header.
func (c *Client) request(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType, accept string) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return c.send(req)
}

func decodeResponse(resp *http.Response, out any) error {
	if out == nil {
		// Drained so that the connection can be reused; the answer is already known to be a success.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: %s %s: decode response: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// pageQuery encodes offset and limit; zero values are left to the server's defaults.
func pageQuery(q url.Values, offset, limit int) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	return q
}
