package rawtcp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, the dialed end wrapped.
func pair(t *testing.T) (wrapped, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer = <-accepted
	if peer == nil {
		t.FailNow()
	}
	wrapped = Wrap(c)
	t.Cleanup(func() { wrapped.Close(); peer.Close() })
	return wrapped, peer
}

func TestWrap_OnlyTCPOnLinux(t *testing.T) {
	c, _ := pair(t)
	if _, raw := c.(*conn); raw != (runtime.GOOS == "linux") {
		t.Fatalf("Wrap(TCP) = %T on %s", c, runtime.GOOS)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if got := Wrap(p1); got != p1 {
		t.Fatalf("Wrap(pipe) = %T, want the pipe itself", got)
	}
}

// A large write fills the socket's buffers and waits for room; both directions carry
// every byte in order, and the reader sees io.EOF once the writer closes.
func TestConn_ReadWriteLargeAndEOF(t *testing.T) {
	c, peer := pair(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	done := make(chan error, 1)
	go func() {
		n, err := c.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the writer meet a full socket
	got, err := io.ReadAll(io.LimitReader(peer, int64(len(want))))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the peer read other bytes than were written")
	}

	go func() {
		peer.Write(want[:1<<20])
		peer.Close()
	}()
	back, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(back, want[:1<<20]) {
		t.Fatal("read other bytes than the peer wrote")
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v", n, err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
}

// A read deadline ends a waiting Read with the net package's timeout error; a later
// deadline lets the connection go on.
func TestConn_ReadDeadline(t *testing.T) {
	c, peer := pair(t)
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := c.Read(make([]byte, 16))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline = %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("error %v: want a *net.OpError of op read", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	peer.Write([]byte("x"))
	buf := make([]byte, 16)
	if n, err := c.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
		t.Fatalf("Read = %d %q, %v", n, buf[:n], err)
	}
}

// A write deadline ends a Write that waits for room (the peer reads nothing).
func TestConn_WriteDeadline(t *testing.T) {
	c, _ := pair(t)
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := c.Write(make([]byte, 32<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= 32<<20 {
		t.Fatalf("Write to a peer that reads nothing = %d, %v; want a timeout", n, err)
	}
}

// Closing the connection ends a Read waiting in another goroutine with net.ErrClosed.
func TestConn_CloseEndsAWaitingRead(t *testing.T) {
	c, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 16))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waits after Close")
	}
}

// A reset by the peer is an error of the read, named like the net package's.
func TestConn_ResetIsAnOpError(t *testing.T) {
	c, peer := pair(t)
	peer.(*net.TCPConn).SetLinger(0)
	c.Write([]byte("unread")) // so that the peer's close resets
	time.Sleep(20 * time.Millisecond)
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	_, err := c.Read(make([]byte, 16))
	var oe *net.OpError
	if err == nil || err == io.EOF || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset = %v, want a read *net.OpError", err)
	}
}
