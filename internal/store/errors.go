package store

import (
	"errors"
	"fmt"
	"strconv"
)

// Error is a Kyoto Cabinet-style database error: a KC error code plus a message.
// Error renders "<code>: <codename>: <message>" (for example "7: no record: no record");
// ktserver prefixes "DB: " as KT does.
type Error struct {
	Code    int    // KC error code (kc::BasicDB::Error::Code): one of the Code* constants
	Message string // message set by KT/KC, or the failing action for system errors
	kind    *Error // the sentinel this error is a detailed instance of (errors.Is)
	cause   error  // the underlying failure of a system error (errors.Is/As see through)
}

// Kyoto Cabinet's error codes (kc::BasicDB::Error::Code), as KT reports them.
const (
	CodeSuccess   = 0  // success
	CodeNoImpl    = 1  // not implemented
	CodeInvalid   = 2  // invalid operation
	CodeNoRepos   = 3  // no repository
	CodeNoPerm    = 4  // no permission
	CodeBroken    = 5  // broken file
	CodeDuplicate = 6  // record duplication
	CodeNoRecord  = 7  // no record
	CodeLogic     = 8  // logical inconsistency
	CodeSystem    = 9  // system error
	CodeMisc      = 15 // miscellaneous error
)

// Unwrap returns the failure a system error wraps (nil for the others).
func (e *Error) Unwrap() error { return e.cause }

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
	case CodeSuccess:
		return "success"
	case CodeNoImpl:
		return "not implemented"
	case CodeInvalid:
		return "invalid operation"
	case CodeNoRepos:
		return "no repository"
	case CodeNoPerm:
		return "no permission"
	case CodeBroken:
		return "broken file"
	case CodeDuplicate:
		return "record duplication"
	case CodeNoRecord:
		return "no record"
	case CodeLogic:
		return "logical inconsistency"
	case CodeSystem:
		return "system error"
	default:
		return "miscellaneous error"
	}
}

// The errors callers distinguish. They are returned as these exact pointers, so both
// errors.Is and == work.
var (
	// ErrNoRecord: the record is absent or expired (get/check/seize/remove/replace/cursor).
	ErrNoRecord = &Error{Code: CodeNoRecord, Message: "no record"}
	// ErrDuplicate: add found a live record.
	ErrDuplicate = &Error{Code: CodeDuplicate, Message: "record duplication"}
	// ErrLogic: increment on a value of the wrong size, orig=try on a missing record,
	// or an arithmetic result KT reports as a failure (INT64MIN, NaN).
	ErrLogic = &Error{Code: CodeLogic, Message: "logical inconsistency"}
	// ErrConflict: cas found a different state than requested.
	ErrConflict = &Error{Code: CodeLogic, Message: "status conflict"}
	// ErrNoPermission: a write on a read-only (-ord) database.
	ErrNoPermission = &Error{Code: CodeNoPerm, Message: "permission denied"}
	// ErrClosed: the database has been closed.
	ErrClosed = &Error{Code: CodeInvalid, Message: "not opened"}
)

// sysErr wraps a pebble failure as a KC system error (CodeSystem). The message is the
// first line of err's: Pebble's corruption errors carry more lines, which have no place
// in a KT answer. err stays reachable through errors.Is and errors.As.
func sysErr(what string, err error) error {
	return &Error{Code: CodeSystem, Message: fmt.Sprintf("%s: %s", what, oneLine(err)), cause: err}
}

// Transaction errors.
var (
	// ErrTxConflict: Commit found a key the transaction wrote changed by another writer.
	ErrTxConflict = &Error{Code: CodeLogic, Message: "transaction conflict"}
	// ErrTxDone: the transaction has already been committed or aborted.
	ErrTxDone = &Error{Code: CodeLogic, Message: "transaction already finished"}
	// ErrTxUnsupported: an operation a transaction cannot contain (clear).
	ErrTxUnsupported = &Error{Code: CodeLogic, Message: "not supported in a transaction"}
	// ErrTxTooLarge: the transaction exceeds its change or byte limit.
	ErrTxTooLarge = &Error{Code: CodeLogic, Message: "transaction too large"}
	// ErrTxNested: Begin on a transactional view.
	ErrTxNested = &Error{Code: CodeLogic, Message: "transaction already open"}
)

// ErrDamaged is matched (errors.Is) by every DamageError: a store directory Open
// refuses, its files left as they were.
var ErrDamaged = errors.New("store: damaged store")
