// Package ktdcontainer runs ktd in a Docker container from a Go test, the way
// testcontainers-go's Redis module runs Redis: Run starts the image (ktd:dev, built
// by `make image`), waits until /rpc/void answers on the mapped port, and returns
// the address to give a KT client; Terminate removes the container.
//
//	ctr, err := ktdcontainer.Run(ctx)
//	if err != nil { ... }
//	defer ctr.Terminate(context.Background())
//	c := mykt.Dial(ctr.Addr())
//
// Nothing is pulled: the image must exist locally. testcontainers' reaper (Ryuk) is
// an image from a registry too; set TESTCONTAINERS_RYUK_DISABLED=true (the Makefile
// does) and terminate containers explicitly. Where testcontainers mistakes the host
// for a container (it then dials the default gateway), set
// TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 (the Makefile does too).
package ktdcontainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// DefaultImage is the image `make image` builds.
const DefaultImage = "ktd:dev"

// port is ktd's port inside the container.
const port = "1978/tcp"

// ErrUnavailable is returned (wrapped) by Available and Run when no Docker engine
// answers or the image is missing.
var ErrUnavailable = errors.New("ktdcontainer: unavailable")

// Container is a ktd running in a Docker container.
type Container struct {
	ctr  *testcontainers.DockerContainer
	addr string
}

type settings struct {
	image string
	args  []string
	wait  time.Duration
}

// Option changes how Run starts the container.
type Option func(*settings)

// WithImage runs another image than DefaultImage.
func WithImage(image string) Option { return func(s *settings) { s.image = image } }

// WithArgs replaces ktd's command line (the image's default is
// "-host 0.0.0.0 -port 1978 /data/casket.kct"). Keep -host 0.0.0.0 -port 1978: the
// port is published from there.
func WithArgs(args ...string) Option {
	return func(s *settings) { s.args = append([]string(nil), args...) }
}

// WithStartTimeout bounds how long Run waits for the server (default 60 s).
func WithStartTimeout(d time.Duration) Option { return func(s *settings) { s.wait = d } }

// Available reports whether a Docker engine answers and has the image (DefaultImage
// unless given), without starting anything.
func Available(ctx context.Context, image ...string) error {
	img := DefaultImage
	if len(image) > 0 {
		img = image[0]
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil { // testcontainers panics on some broken set-ups
				done <- fmt.Errorf("%v", r)
			}
		}()
		prov, err := testcontainers.NewDockerProvider()
		if err != nil {
			done <- err
			return
		}
		defer prov.Close()
		if err := prov.Health(ctx); err != nil {
			done <- err
			return
		}
		if _, err := prov.Client().ImageInspect(ctx, img); err != nil {
			done <- fmt.Errorf("no image %s (make image builds it): %v", img, err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: no answer from the Docker engine", ErrUnavailable)
	}
}

// Run starts a ktd container and waits until it serves.
func Run(ctx context.Context, opts ...Option) (*Container, error) {
	s := settings{image: DefaultImage, wait: 60 * time.Second}
	for _, o := range opts {
		o(&s)
	}
	if err := Available(ctx, s.image); err != nil {
		return nil, err
	}
	copts := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts(port),
		testcontainers.WithWaitStrategy(wait.ForHTTP("/rpc/void").WithPort(port).WithForcedIPv4LocalHost().WithStartupTimeout(s.wait)),
	}
	if s.args != nil {
		copts = append(copts, testcontainers.WithCmd(s.args...))
	}
	ctr, err := testcontainers.Run(ctx, s.image, copts...)
	c := &Container{ctr: ctr}
	if err != nil {
		if ctr != nil {
			c.Terminate(context.Background())
		}
		return nil, fmt.Errorf("ktdcontainer: start %s: %w", s.image, err)
	}
	host, err := ctr.Host(ctx)
	if err != nil {
		c.Terminate(context.Background())
		return nil, fmt.Errorf("ktdcontainer: container host: %w", err)
	}
	mapped, err := ctr.MappedPort(ctx, port)
	if err != nil {
		c.Terminate(context.Background())
		return nil, fmt.Errorf("ktdcontainer: mapped port: %w", err)
	}
	if host == "localhost" {
		host = "127.0.0.1" // Docker publishes on IPv4; localhost may resolve to ::1 first
	}
	c.addr = net.JoinHostPort(host, strconv.Itoa(int(mapped.Num())))
	return c, nil
}

// Addr is the host:port where the container's ktd is reachable from the host.
func (c *Container) Addr() string { return c.addr }

// URL is the base URL of its HTTP interface.
func (c *Container) URL() string { return "http://" + c.addr }

// ID is the container's id.
func (c *Container) ID() string { return c.ctr.GetContainerID() }

// Logs returns ktd's output so far.
func (c *Container) Logs(ctx context.Context) (string, error) {
	rc, err := c.ctr.Logs(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// Stop stops ktd with SIGTERM (a clean shutdown) and waits up to timeout; the
// container remains until Terminate.
func (c *Container) Stop(ctx context.Context, timeout time.Duration) error {
	return c.ctr.Stop(ctx, &timeout)
}

// Terminate stops and removes the container (and its anonymous data volume).
func (c *Container) Terminate(ctx context.Context) error {
	if c.ctr == nil {
		return nil
	}
	return c.ctr.Terminate(ctx)
}
