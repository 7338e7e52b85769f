//go:build !linux

package walsync

func ringSyncs() uint64 { return 0 }
