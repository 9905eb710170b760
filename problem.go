package slipway

import "net/http"

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

// problemStatuses are the HTTP statuses of the error codes' problems; any other code (EINTERNAL) is 500.
var problemStatuses = map[string]int{
	EINVALID:      http.StatusBadRequest,
	EUNAUTHORIZED: http.StatusUnauthorized,
	EFORBIDDEN:    http.StatusForbidden,
	ENOTFOUND:     http.StatusNotFound,
	ECONFLICT:     http.StatusConflict,
	ETOOLARGE:     http.StatusRequestEntityTooLarge,
	EUNSUPPORTED:  http.StatusUnsupportedMediaType,
	EOVERLOADED:   http.StatusTooManyRequests,
	ERATELIMITED:  http.StatusTooManyRequests,
	EUNAVAILABLE:  http.StatusServiceUnavailable,
	ETIMEOUT:      http.StatusGatewayTimeout,
}

// ProblemStatus is the HTTP status of a problem with the error code: the one mapping the server answers with.
func ProblemStatus(code string) int {
	if s, ok := problemStatuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ProblemCode is the error code of an answer with status that carries no problem (a proxy's page, an empty
// body): the code whose problems have that status, except that a gateway's failures (502, 503, 504) say only
// that the server is unavailable.
func ProblemCode(status int) string {
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return EUNAVAILABLE
	case http.StatusTooManyRequests:
		return EOVERLOADED // a rate limit says so in its problem; a bare 429 is taken as load
	}
	for code, s := range problemStatuses {
		if s == status {
			return code
		}
	}
	return EINTERNAL
}
