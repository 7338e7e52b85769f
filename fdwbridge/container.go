package fdwbridge

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// containerKTHost is the name kt_fdw inside the container uses for the
// host; StartPostgres maps it to the host gateway.
const containerKTHost = "host.docker.internal"

// Container timeouts.
const (
	dockerCheckTimeout    = 5 * time.Second
	containerStartTimeout = 10 * time.Minute // includes the first image build
	containerStopTimeout  = 30 * time.Second
)

// pgContainer is a PostgreSQL container started by testcontainers.
type pgContainer struct {
	ctr *testcontainers.DockerContainer
}

// DockerAvailable reports whether a Docker daemon answers, within 5 s and
// without starting anything. The error wraps ErrNoDocker.
func DockerAvailable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dockerCheckTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			// testcontainers panics on some broken Docker setups.
			if r := recover(); r != nil {
				done <- fmt.Errorf("%v", r)
			}
		}()
		prov, err := testcontainers.NewDockerProvider()
		if err != nil {
			done <- err
			return
		}
		defer prov.Close()
		done <- prov.Health(ctx)
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: no daemon answered (%v)", ErrNoDocker, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: no answer from the daemon within %v", ErrNoDocker, dockerCheckTimeout)
	}
}

// startContainer builds the image of fdwbridge/Dockerfile (PostgreSQL with
// kt_fdw installed) and runs it with trust authentication.
func startContainer(ctx context.Context, opts PGOptions) (*Postgres, error) {
	if err := DockerAvailable(ctx); err != nil {
		return nil, err
	}
	extDir, err := ExtensionDir()
	if err != nil {
		return nil, err
	}
	buildCtx := filepath.Dir(extDir)
	if _, err := os.Stat(filepath.Join(buildCtx, "Dockerfile")); err != nil {
		return nil, fmt.Errorf("fdwbridge: Dockerfile of the container mode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, containerStartTimeout)
	defer cancel()

	opts.logf("fdwbridge: building and starting the kt_fdw PostgreSQL image from %s", buildCtx)
	start := time.Now()
	ctr, err := testcontainers.Run(ctx, "",
		testcontainers.WithDockerfile(testcontainers.FromDockerfile{
			Context:        buildCtx,
			Dockerfile:     "Dockerfile",
			Repo:           "ktd-kt-fdw-postgres",
			Tag:            "dev",
			KeepImage:      true, // the next run reuses the layers
			BuildLogWriter: logWriter(opts),
		}),
		testcontainers.WithEnv(map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust"}),
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.ExtraHosts = append(hc.ExtraHosts, containerKTHost+":host-gateway")
		}),
		// The image's entrypoint starts a temporary server first; the
		// second "ready" line is the real one.
		testcontainers.WithWaitStrategy(
			wait.ForLog("database system is ready to accept connections").WithOccurrence(2),
			wait.ForListeningPort("5432/tcp"),
		),
	)
	c := &pgContainer{ctr: ctr}
	if err != nil {
		if ctr != nil {
			_ = c.stop(false, opts.logf)
		}
		return nil, fmt.Errorf("fdwbridge: start PostgreSQL container: %w", err)
	}
	host, err := ctr.Host(ctx)
	if err != nil {
		_ = c.stop(false, opts.logf)
		return nil, fmt.Errorf("fdwbridge: container host: %w", err)
	}
	port, err := ctr.MappedPort(ctx, "5432/tcp")
	if err != nil {
		_ = c.stop(false, opts.logf)
		return nil, fmt.Errorf("fdwbridge: container port: %w", err)
	}
	p := &Postgres{
		Host:     host,
		Port:     int(port.Num()),
		User:     "postgres",
		Database: "postgres",
		Mode:     ModeContainer,
		opts:     opts,
		ctr:      c,
	}
	opts.logf("fdwbridge: PostgreSQL container %.12s on %s:%d after %v",
		ctr.GetContainerID(), p.Host, p.Port, time.Since(start).Round(time.Millisecond))
	return p, nil
}

// logWriter sends the image build log to opts.Logf line by line.
func logWriter(opts PGOptions) io.Writer {
	if opts.Logf == nil {
		return io.Discard
	}
	return lineWriter(func(line string) { opts.Logf("docker build: %s", line) })
}

// lineWriter calls its function once per complete line written (a final
// partial line is dropped).
type lineWriter func(string)

func (w lineWriter) Write(b []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(b), "\n"), "\n") {
		if line != "" {
			w(line)
		}
	}
	return len(b), nil
}

// logs returns the container's whole log.
func (c *pgContainer) logs() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := c.ctr.Logs(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return string(data), err
}

func (c *pgContainer) logTail(n int) string {
	s, err := c.logs()
	if err != nil {
		return fmt.Sprintf("(no container log: %v)", err)
	}
	return tail(s, n)
}

// stop terminates the container; with keep, its log is first saved to a
// file in os.TempDir whose name is logged.
func (c *pgContainer) stop(keep bool, logf func(string, ...any)) error {
	if keep {
		if s, err := c.logs(); err == nil {
			f, ferr := os.CreateTemp("", "fdwbridge-pg-container-*.log")
			if ferr == nil {
				_, _ = f.WriteString(s)
				_ = f.Close()
				logf("fdwbridge: kept the PostgreSQL container log in %s", f.Name())
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerStopTimeout)
	defer cancel()
	if err := c.ctr.Terminate(ctx); err != nil {
		return fmt.Errorf("fdwbridge: terminate container: %w", err)
	}
	return nil
}
