package httpapi

import (
	"testing"
	"time"

	"github.com/slipway-ml/slipway"
)

func TestRateLimiterBucket(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	tok := &slipway.Token{ID: "t", Name: "ci", RateLimit: &slipway.TokenRateLimit{RequestsPerSecond: 2, Burst: 3}}
	steps := []struct {
		at       time.Duration
		want     bool
		wantWait time.Duration
	}{
		{0, true, 0}, {0, true, 0}, {0, true, 0}, // the burst
		{0, false, 500 * time.Millisecond}, // empty: one token every 500 ms
		{250 * time.Millisecond, false, 250 * time.Millisecond},
		{500 * time.Millisecond, true, 0},
		{500 * time.Millisecond, false, 500 * time.Millisecond},
		{10 * time.Second, true, 0}, // refilled, but never above the burst
		{10 * time.Second, true, 0},
		{10 * time.Second, true, 0},
		{10 * time.Second, false, 500 * time.Millisecond},
	}
	l := newRateLimiter()
	for i, st := range steps {
		ok, wait := l.allow(tok, t0.Add(st.at))
		if ok != st.want || (wait-st.wantWait).Abs() > time.Millisecond {
			t.Fatalf("step %d at %v: allow %v wait %v, want %v %v", i, st.at, ok, wait, st.want, st.wantWait)
		}
	}
	other := &slipway.Token{ID: "u", Name: "other", RateLimit: &slipway.TokenRateLimit{RequestsPerSecond: 1, Burst: 1}}
	if ok, _ := l.allow(other, t0.Add(10*time.Second)); !ok {
		t.Fatal("one token's calls used another token's bucket")
	}
	if retry, err := l.refuse(tok, 1500*time.Millisecond); slipway.ErrorCode(err) != slipway.ERATELIMITED || retry != "2" {
		t.Fatalf("refusal %v with Retry-After %q, want rate_limited and 2", err, retry)
	}
}

func TestTokenRateLimitValidate(t *testing.T) {
	for _, tt := range []struct {
		in        slipway.TokenRateLimit
		ok        bool
		wantBurst int
	}{
		{slipway.TokenRateLimit{RequestsPerSecond: 10}, true, 10},
		{slipway.TokenRateLimit{RequestsPerSecond: 0.5}, true, 1},
		{slipway.TokenRateLimit{RequestsPerSecond: 5, Burst: 20}, true, 20},
		{slipway.TokenRateLimit{RequestsPerSecond: 0}, false, 0},
		{slipway.TokenRateLimit{RequestsPerSecond: -1}, false, 0},
		{slipway.TokenRateLimit{RequestsPerSecond: 1, Burst: -1}, false, 0},
	} {
		l := tt.in
		err := l.Validate()
		if (err == nil) != tt.ok || tt.ok && l.Burst != tt.wantBurst {
			t.Errorf("%+v: %v, burst %d", tt.in, err, l.Burst)
		}
	}
}
