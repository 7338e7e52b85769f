package store

import (
	"fmt"
	"strconv"
)

// Error is a Kyoto Cabinet-style database error: a KC error code plus a message.
// Error renders "<code>: <codename>: <message>" (for example "7: no record: no record");
// ktserver prefixes "DB: " as KT does.
type Error struct {
	Code    int    // KC error code (kc::BasicDB::Error::Code)
	Message string // message set by KT/KC, or the failing action for system errors
	kind    *Error // the sentinel this error is a detailed instance of (errors.Is)
}

// Is reports whether e is a detailed instance of target (see withDetail).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && e.kind != nil && e.kind == t
}

// withDetail returns sentinel with detail appended to its message; errors.Is still
// matches the sentinel.
func withDetail(sentinel *Error, detail string) *Error {
	return &Error{Code: sentinel.Code, Message: sentinel.Message + ": " + detail, kind: sentinel}
}

// Error returns "<code>: <codename>: <message>".
func (e *Error) Error() string {
	return strconv.Itoa(e.Code) + ": " + e.CodeName() + ": " + e.Message
}

// CodeName returns Kyoto Cabinet's name for e.Code ("no record", "logical inconsistency", ...).
func (e *Error) CodeName() string {
	switch e.Code {
	case 0:
		return "success"
	case 1:
		return "not implemented"
	case 2:
		return "invalid operation"
	case 3:
		return "no repository"
	case 4:
		return "no permission"
	case 5:
		return "broken file"
	case 6:
		return "record duplication"
	case 7:
		return "no record"
	case 8:
		return "logical inconsistency"
	case 9:
		return "system error"
	default:
		return "miscellaneous error"
	}
}

// The errors callers distinguish. They are returned as these exact pointers, so both
// errors.Is and == work.
var (
	// ErrNoRecord: the record is absent or expired (get/check/seize/remove/replace/cursor).
	ErrNoRecord = &Error{Code: 7, Message: "no record"}
	// ErrDuplicate: add found a live record.
	ErrDuplicate = &Error{Code: 6, Message: "record duplication"}
	// ErrLogic: increment on a value of the wrong size, orig=try on a missing record,
	// or an arithmetic result KT reports as a failure (INT64MIN, NaN).
	ErrLogic = &Error{Code: 8, Message: "logical inconsistency"}
	// ErrConflict: cas found a different state than requested.
	ErrConflict = &Error{Code: 8, Message: "status conflict"}
	// ErrNoPermission: a write on a read-only (-ord) database.
	ErrNoPermission = &Error{Code: 4, Message: "permission denied"}
	// ErrClosed: the database has been closed.
	ErrClosed = &Error{Code: 2, Message: "not opened"}
)

// sysErr wraps a pebble failure as a KC system error (code 9). The message is the first
// line of err's: Pebble's corruption errors carry more lines, which have no place in a
// KT answer.
func sysErr(what string, err error) error {
	return &Error{Code: 9, Message: fmt.Sprintf("%s: %s", what, oneLine(err))}
}
