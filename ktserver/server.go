// Package ktserver is a Kyoto Tycoon-compatible server on Pebble: HTTP RPC,
// REST and the binary protocol on one TCP port.
//
// Embedding it takes a few lines:
//
//	srv, err := ktserver.New(ktserver.DefaultConfig())
//	ln, _ := net.Listen("tcp", "127.0.0.1:0")
//	go srv.Serve(ln)
//	defer srv.Close()
package ktserver

import (
	"errors"
	"net"
)

// Server serves the KT protocols. Create it with New, start it with Serve
// and stop it with Close.
type Server struct {
	cfg Config
	ln  net.Listener
}

// New validates cfg, fills in defaults and opens the databases. It starts no
// goroutines.
func New(cfg Config) (*Server, error) { return nil, errors.New("ktserver: not implemented yet") }

// Serve accepts connections on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error { return errors.New("not implemented") }

// Addr returns the listener's address once Serve has been called.
func (s *Server) Addr() net.Addr { return nil }

// Close stops the server and closes the databases.
func (s *Server) Close() error { return nil }
