package slipway

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"churn", true},
		{"churn-v2.1_b", true},
		{"0", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"Churn", false},
		{"-churn", false},
		{"churn-", false},
		{".churn", false},
		{"churn_", false},
		{"ch urn", false},
		{"churn/../x", false},
		{"čhurn", false},
	}
	for _, tt := range tests {
		if err := ValidateName("model", tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// The hand-written check accepts exactly what the documented pattern does.
func TestValidNameMatchesPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)
	alphabet := []byte("az09._-A/ ")
	var names []string
	var gen func(prefix []byte, depth int)
	gen = func(prefix []byte, depth int) {
		names = append(names, string(prefix))
		if depth == 0 {
			return
		}
		for _, c := range alphabet {
			gen(append(prefix, c), depth-1)
		}
	}
	gen(nil, 4)
	names = append(names, strings.Repeat("a", 63)+"-", strings.Repeat("a", 64), strings.Repeat("a", 65))
	for _, n := range names {
		if got, want := validName(n), pattern.MatchString(n); got != want {
			t.Fatalf("validName(%q) = %v, the pattern says %v", n, got, want)
		}
	}
}
