// Package slipway holds the nouns of the product (models, versions, tokens, ...), their states, the domain error
// type and the interfaces that services depend on. It imports only the standard library.
package slipway

import (
	"errors"
	"fmt"
)

// Error codes: stable, mapped to HTTP statuses in one place (internal/httpapi).
const (
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	ECONFLICT     = "conflict"
	EUNAUTHORIZED = "unauthorized"
	EFORBIDDEN    = "forbidden"
	ETOOLARGE     = "too_large"
	EOVERLOADED   = "overloaded"
	EUNAVAILABLE  = "unavailable"
	ETIMEOUT      = "timeout"
	EINTERNAL     = "internal"
	// EMODEL is a failure inside the model's predict() that is not about the input (HTTP 500, message shown).
	EMODEL = "model_error"
	// EUNSUPPORTED is a request body in a media type (Content-Type) the endpoint does not take (HTTP 415).
	EUNSUPPORTED = "unsupported_media_type"
	// ERATELIMITED is a token over its own rate limit (HTTP 429 with Retry-After), unlike EOVERLOADED, a
	// deployment whose queue is full.
	ERATELIMITED = "rate_limited"
)

// Error is the domain error. Message is written for the person who made the request: it says what is wrong and
// what to do. Err is the underlying cause, logged but never shown to clients.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with code and message that keeps err as its cause.
func Wrap(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the person-facing message of the first *Error in err's chain. Internal errors get a
// generic message so that causes (paths, SQL) never leak to clients.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error: the server logged the cause; retry, or report it with the request id"
}
