package httpapi

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slipway-ml/slipway"
)

// rateLimiter keeps one token bucket per API token that has a rate limit. Buckets live as long as the server
// (one per limited token: bounded by the tokens an admin created).
type rateLimiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	limited *prometheus.CounterVec // calls refused, by token name
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter() *rateLimiter {
	return &rateLimiter{buckets: map[string]*bucket{}, limited: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_token_rate_limited_total",
		Help: "Prediction calls refused (429) because their token was over its own rate limit.",
	}, []string{"token"})}
}

// allow takes one call from t's bucket at now; when the bucket is empty it answers how long until one is
// available.
func (l *rateLimiter) allow(t *slipway.Token, now time.Time) (bool, time.Duration) {
	lim := t.RateLimit
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[t.ID]
	if b == nil {
		b = &bucket{tokens: float64(lim.Burst), last: now}
		l.buckets[t.ID] = b
	}
	b.tokens = math.Min(float64(lim.Burst), b.tokens+now.Sub(b.last).Seconds()*lim.RequestsPerSecond)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / lim.RequestsPerSecond * float64(time.Second))
	return false, wait
}

// refuse is the Retry-After and the problem of a call over its token's limit.
func (l *rateLimiter) refuse(t *slipway.Token, wait time.Duration) (string, error) {
	l.limited.WithLabelValues(t.Name).Inc()
	secs := max(1, int(math.Ceil(wait.Seconds())))
	return strconv.Itoa(secs), slipway.Errorf(slipway.ERATELIMITED, "token %q is over its rate limit of %g requests per second (burst %d): retry in %d s",
		t.Name, t.RateLimit.RequestsPerSecond, t.RateLimit.Burst, secs)
}
