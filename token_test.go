package slipway

import (
	"testing"
	"time"
)

func TestTokenExpiry(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	tests := []struct {
		name      string
		spec      TokenSpec
		maxTTL    time.Duration
		want      *time.Time
		wantError bool
	}{
		{"no lifetime, no maximum: never expires", TokenSpec{}, 0, nil, false},
		{"no lifetime under a maximum gets the maximum", TokenSpec{}, time.Hour, at(time.Hour), false},
		{"expires_in", TokenSpec{ExpiresIn: "90s"}, 0, at(90 * time.Second), false},
		{"expires_in at the maximum", TokenSpec{ExpiresIn: "1h"}, time.Hour, at(time.Hour), false},
		{"expires_in past the maximum", TokenSpec{ExpiresIn: "1h1s"}, time.Hour, nil, true},
		{"expires_at", TokenSpec{ExpiresAt: at(2 * time.Hour)}, 0, at(2 * time.Hour), false},
		{"expires_at past the maximum", TokenSpec{ExpiresAt: at(2 * time.Hour)}, time.Hour, nil, true},
		{"expires_at now is in the past", TokenSpec{ExpiresAt: at(0)}, 0, nil, true},
		{"both", TokenSpec{ExpiresIn: "1h", ExpiresAt: at(time.Hour)}, 0, nil, true},
		{"not a duration", TokenSpec{ExpiresIn: "30 days"}, 0, nil, true},
		{"zero duration", TokenSpec{ExpiresIn: "0s"}, 0, nil, true},
		{"negative duration", TokenSpec{ExpiresIn: "-1h"}, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.spec.Expiry(now, tt.maxTTL)
			if tt.wantError {
				if ErrorCode(err) != EINVALID {
					t.Fatalf("got %v, %v; want an EINVALID error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tt.want == nil) || got != nil && !got.Equal(*tt.want) {
				t.Fatalf("expiry = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTokenUsableAtTheBoundary(t *testing.T) {
	exp := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	tok := &Token{Name: "ci", ExpiresAt: &exp}
	if err := tok.Usable(exp.Add(-time.Nanosecond)); err != nil {
		t.Fatalf("a nanosecond before expiry: %v", err)
	}
	for _, now := range []time.Time{exp, exp.Add(time.Nanosecond)} {
		if err := tok.Usable(now); ErrorCode(err) != EUNAUTHORIZED {
			t.Fatalf("at %v: got %v, want EUNAUTHORIZED", now, err)
		}
	}
	revoked := exp.Add(-time.Hour)
	if err := (&Token{Name: "ci", RevokedAt: &revoked}).Usable(revoked); ErrorCode(err) != EUNAUTHORIZED {
		t.Fatalf("revoked: got %v", err)
	}
}

func TestTokenRotationGrace(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		grace string
		want  time.Time
		bad   bool
	}{{"", now.Add(DefaultRotationGrace), false}, {"0s", now, false}, {"24h", now.Add(24 * time.Hour), false}, {"-1s", now, true}, {"soon", now, true}} {
		got, err := TokenRotation{Grace: tt.grace}.GraceUntil(now)
		if tt.bad != (err != nil) || !tt.bad && !got.Equal(tt.want) {
			t.Errorf("grace %q: got %v, %v", tt.grace, got, err)
		}
	}
	if _, set, err := (TokenRotation{}).NewExpiry(now, time.Hour); set || err != nil {
		t.Errorf("a rotation without a lifetime must keep the expiry: set=%v err=%v", set, err)
	}
	if exp, set, err := (TokenRotation{ExpiresIn: "30m"}).NewExpiry(now, time.Hour); !set || err != nil || !exp.Equal(now.Add(30*time.Minute)) {
		t.Errorf("rotation with expires_in: %v %v %v", exp, set, err)
	}
}
