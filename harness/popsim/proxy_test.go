package popsim

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer accepts connections and echoes every byte back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T) (*proxy, net.Conn) {
	t.Helper()
	p, err := newProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return p, c
}

// roundTrip sends msg through c and returns how long the echo took.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetDeadline(start.Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo %q, want %q", got, msg)
	}
	return time.Since(start)
}

func TestProxy_Forwards(t *testing.T) {
	_, c := startProxy(t)
	if d := roundTrip(t, c, []byte("hello")); d > time.Second {
		t.Errorf("round trip took %v", d)
	}
}

func TestProxy_Latency(t *testing.T) {
	p, c := startProxy(t)
	p.SetDelay(100 * time.Millisecond)
	// Each way is delayed: a round trip takes at least twice the delay.
	if d := roundTrip(t, c, []byte("x")); d < 200*time.Millisecond {
		t.Errorf("round trip with 100ms each way took %v, want >= 200ms", d)
	}
	p.SetDelay(0)
	if d := roundTrip(t, c, []byte("y")); d > 150*time.Millisecond {
		t.Errorf("round trip after the delay was removed took %v", d)
	}
}

func TestProxy_Partition(t *testing.T) {
	p, c := startProxy(t)
	roundTrip(t, c, []byte("before"))
	p.SetPartition(true)
	c.Write([]byte("during"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 16)
	if n, err := c.Read(buf); err == nil {
		t.Fatalf("read %q through a partition", buf[:n])
	}
	// A new connection hangs too: accepted, but nothing passes.
	c2, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write([]byte("new"))
	c2.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c2.Read(buf); err == nil {
		t.Fatalf("new connection read %q through a partition", buf[:n])
	}
	// Healing delivers what was sent during the partition, on both.
	p.SetPartition(false)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf[:6]); err != nil || string(buf[:6]) != "during" {
		t.Fatalf("after healing read %q, %v; want \"during\"", buf[:6], err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c2, buf[:3]); err != nil || string(buf[:3]) != "new" {
		t.Fatalf("new connection after healing read %q, %v", buf[:3], err)
	}
}

func TestProxy_Bandwidth(t *testing.T) {
	p, c := startProxy(t)
	const bps = 64 << 10
	p.SetBandwidth(bps)
	msg := make([]byte, 32<<10) // half a second's worth each way
	for i := range msg {
		msg[i] = byte(i)
	}
	start := time.Now()
	go c.Write(msg)
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(br, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	// Pipelined through both directions: at least ~0.5 s, well under 2 s.
	if d := time.Since(start); d < 400*time.Millisecond || d > 2*time.Second {
		t.Errorf("32 KiB at 64 KiB/s took %v, want about 0.5 s", d)
	}
	p.SetBandwidth(0)
	if d := roundTrip(t, c, msg); d > 300*time.Millisecond {
		t.Errorf("32 KiB without a cap took %v", d)
	}
}

func TestProxy_UpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p, err := newProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from a proxy whose upstream is down: %v, want EOF", err)
	}
}

func TestProxy_CloseStopsStalledConnections(t *testing.T) {
	p, c := startProxy(t)
	p.SetPartition(true)
	c.Write([]byte("stuck"))
	done := make(chan struct{})
	go func() {
		p.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a partitioned connection")
	}
}
