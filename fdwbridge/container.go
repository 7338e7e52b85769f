package fdwbridge

import (
	"context"
	"crypto/sha256"
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

	tag, err := imageTag(buildCtx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	runOpts := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts("5432/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.ExtraHosts = append(hc.ExtraHosts, containerKTHost+":host-gateway")
		}),
		testcontainers.WithWaitStrategy(
			wait.ForLog("database system is ready to accept connections"),
			wait.ForListeningPort("5432/tcp"),
		),
	}
	image := pgImageRepo + ":" + tag
	if !imageExists(ctx, image) {
		// Built once per content of its inputs: the tag is their hash, so an image of
		// the same sources is reused and a change of any builds a new one.
		opts.logf("fdwbridge: building the kt_fdw PostgreSQL image %s from %s", image, buildCtx)
		runOpts = append(runOpts, testcontainers.WithDockerfile(testcontainers.FromDockerfile{
			Context:        buildCtx,
			Dockerfile:     "Dockerfile",
			Repo:           pgImageRepo,
			Tag:            tag,
			KeepImage:      true,
			BuildLogWriter: logWriter(opts),
		}))
		image = ""
	}
	ctr, err := testcontainers.Run(ctx, image, runOpts...)
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

// pgImageRepo is the repository of the kt_fdw PostgreSQL image; its tag is
// imageTag's hash of the build inputs.
const pgImageRepo = "ktd-kt-fdw-postgres"

// imageInputs are the files of the build context that make the image (kt_fdw's
// sources, not what a build on the host left beside them).
var imageInputs = []string{"Dockerfile", "pg-entrypoint.sh", "kt_fdw/Makefile", "kt_fdw/kt_fdw.c",
	"kt_fdw/kt_client.c", "kt_fdw/kt_fdw.h", "kt_fdw/kt_fdw.control", "kt_fdw/kt_fdw--1.0.sql"}

// imageTag is a hash of the image's inputs: "src-" and 12 hex digits.
func imageTag(buildCtx string) (string, error) {
	h := sha256.New()
	for _, name := range imageInputs {
		b, err := os.ReadFile(filepath.Join(buildCtx, name))
		if err != nil {
			return "", fmt.Errorf("fdwbridge: image input: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return fmt.Sprintf("src-%x", h.Sum(nil)[:6]), nil
}

// ImageName is the kt_fdw PostgreSQL image of this source tree (which
// `make images` builds and the container mode reuses).
func ImageName() (string, error) {
	extDir, err := ExtensionDir()
	if err != nil {
		return "", err
	}
	tag, err := imageTag(filepath.Dir(extDir))
	if err != nil {
		return "", err
	}
	return pgImageRepo + ":" + tag, nil
}

// imageExists reports whether the Docker engine has image.
func imageExists(ctx context.Context, image string) bool {
	prov, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false
	}
	defer prov.Close()
	_, err = prov.Client().ImageInspect(ctx, image)
	return err == nil
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
