//go:build !unix

package store

func openFilesLimit() uint64 { return 0 }
