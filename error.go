package mcpguard

import (
	"errors"
	"fmt"
)

// Error codes shared by every adapter; internal/api maps each to one HTTP status.
const (
	ECONFLICT      = "conflict"      // the resource is in a state that forbids the operation (409)
	EINTERNAL      = "internal"      // a bug or an outage of our own (500)
	EINVALID       = "invalid"       // the input is malformed or fails validation (400)
	ENOTFOUND      = "not_found"     // no such resource for this tenant (404)
	EUNAUTHORIZED  = "unauthorized"  // missing or wrong API key (401)
	EUNPROCESSABLE = "unprocessable" // well-formed but unusable, e.g. an idempotency key reused with another body (422)
)

// FieldError names one invalid field of a request, as a JSON path such as "policies[1].assetId".
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type the application returns to its callers. Its
// Message is safe to show to a client; it never carries secrets.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("mcpguard error: code=%s message=%s", e.Code, e.Message)
}

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, EINTERNAL for any
// other error and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of the *Error in err's chain,
// or a generic text for any other error so internals never leak.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}
