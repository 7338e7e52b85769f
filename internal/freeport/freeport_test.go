package freeport

import (
	"fmt"
	"net"
	"testing"
)

// The port is below the ephemeral range, free (a listener can take it), and a port in
// use is not returned.
func TestLoopback(t *testing.T) {
	lo := ephemeralLow()
	seen := map[int]bool{}
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for range 50 {
		port, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if lo > Min+1000 && (port < Min || port >= lo) {
			t.Fatalf("port %d outside [%d, %d)", port, Min, lo)
		}
		if seen[port] {
			t.Fatalf("port %d returned while a listener holds it", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d is not free: %v", port, err)
		}
		held = append(held, ln)
	}
}
