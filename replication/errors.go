package replication

import "errors"

// The errors of this package that callers distinguish (errors.Is); every one is
// wrapped with its detail where it is returned.
var (
	// ErrMalformed reports a truncated or inconsistent message, frame or
	// ulog file (bad magic, size out of range, record past the end).
	ErrMalformed = errors.New("replication: malformed message or frame")
	// ErrRefused reports the master's 0xBF answer: it has no -ulog, or it
	// could not open a reader; it closes the connection after that byte.
	ErrRefused = errors.New("replication: master refused (0xBF)")
	// ErrChecksum reports a frame whose checksum does not match its bytes: the
	// stream was damaged in transit. Nothing of the frame has been applied.
	ErrChecksum = errors.New("replication: checksum mismatch in the stream")
	// ErrNoULog: the master keeps no update log, so a replica could never
	// catch up with what changes during the copy.
	ErrNoULog = errors.New("replication: the master keeps no update log (-ulog); a replica of it cannot be bootstrapped")
	// ErrNoCut reports that the commits in flight did not finish within Cut's
	// wait.
	ErrNoCut = errors.New("replication: commits in flight did not finish in time for a cut")
	// ErrDiverged ends a session whose digest comparison found the replica's
	// database different from the master's.
	ErrDiverged = errors.New("replication: replica diverged from its master")
)
