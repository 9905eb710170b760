package app

import "testing"

// The gRPC address a server records for the others: the flag's, else the listener's, whose unspecified host
// becomes the advertise URL's; the scheme says whether it speaks TLS.
func TestAdvertisedGRPC(t *testing.T) {
	cases := []struct{ flag, listening, advertise, want string }{
		{"", "", "http://10.0.0.5:8080", ""},
		{"", "grpc://127.0.0.1:9001", "http://127.0.0.1:8080", "grpc://127.0.0.1:9001"},
		{"", "grpc://0.0.0.0:9001", "http://10.0.0.5:8080", "grpc://10.0.0.5:9001"},
		{"", "grpcs://[::]:9001", "https://node-a.internal:8443", "grpcs://node-a.internal:9001"},
		{"", "grpc://0.0.0.0:9001", "", "grpc://127.0.0.1:9001"},
		{"lb.internal:443", "grpcs://0.0.0.0:9001", "https://10.0.0.5:8443", "grpcs://lb.internal:443"},
	}
	for _, c := range cases {
		if got := advertisedGRPC(c.flag, c.listening, c.advertise); got != c.want {
			t.Errorf("advertisedGRPC(%q, %q, %q) = %q, want %q", c.flag, c.listening, c.advertise, got, c.want)
		}
	}
}
