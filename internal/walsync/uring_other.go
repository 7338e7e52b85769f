//go:build !linux

package walsync

// ring is Linux's io_uring; elsewhere files are synced with their SyncData.
type ring struct{}

func syncRing() *ring { return nil }

func (*ring) fdatasync(uintptr) (bool, error) { return false, nil }
