package slipway

// Problem is an RFC 9457 problem details body: what the API answers for every error, with the error Code
// (one of the codes in error.go) and the request's id.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance,omitempty"`
	Code      string `json:"code"`
	RequestID string `json:"request_id,omitempty"`
}
