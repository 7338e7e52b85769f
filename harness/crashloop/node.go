package crashloop

import (
	"net"
	"strconv"

	"github.com/ktdproject/ktd/harness/kit"
)

// newNode returns a ktd child process on a file database in its own
// directory, on a fixed loopback port: a restart reuses both.
func newNode(name, bin, dir string, port int, args ...string) *kit.Node {
	return &kit.Node{
		Name: name, Bin: bin, Dir: dir,
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Args:      append([]string{"-host", "127.0.0.1", "-port", strconv.Itoa(port)}, args...),
		RetryExit: true,
	}
}
