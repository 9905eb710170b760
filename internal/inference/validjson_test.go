package inference

import (
	"strings"
	"testing"

	"github.com/slipway-ml/slipway"
)

func TestValidJSON(t *testing.T) {
	for _, ok := range []string{`{"data": [[1, 2]]}`, `[1]`, `"s"`, " 3 \n"} {
		if err := ValidJSON([]byte(ok)); err != nil {
			t.Errorf("ValidJSON(%q) = %v, want nil", ok, err)
		}
	}
	tests := []struct{ body, want string }{
		{`{"data": [1, 2,]}`, `invalid JSON at byte 15 (line 1): invalid character ']' looking for beginning of value, in "{\"data\": [1, 2,]"`},
		{"{\n\"a\": 1\n\"b\": 2}", `at byte 9 (line 3): invalid character '"' after object key:value pair`},
		{`{"data": [1, 2`, `invalid JSON at byte 14 (line 1): unexpected end of JSON input`},
		{"\x80\x03}q\x00.", `invalid JSON at byte 0 (line 1): invalid character '\u0080' looking for beginning of value`},
		{`{"a": 1} {"b": 2}`, `at byte 9 (line 1): invalid character '{' after top-level value`},
	}
	for _, tt := range tests {
		err := ValidJSON([]byte(tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.want) || slipway.ErrorCode(err) != slipway.EINVALID {
			t.Errorf("ValidJSON(%q) = %v (code %s), want an invalid error containing %q", tt.body, err, slipway.ErrorCode(err), tt.want)
		}
	}
}

// The check runs on every OCI predict request: a valid body must cost no allocation.
func TestValidJSONAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race: sync.Pool drops pooled scanners at random")
	}
	body := []byte(`{"data": [[41, 12, 70.5, "pro", 1], [23, 1, 20.0, "basic", 0]]}`)
	if n := testing.AllocsPerRun(100, func() { _ = ValidJSON(body) }); n != 0 {
		t.Errorf("ValidJSON allocates %.0f times per valid body, want 0", n)
	}
}
