//go:build !linux

package rawtcp

import "net"

func wrap(nc net.Conn) net.Conn { return nc }
