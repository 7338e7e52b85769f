package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ktdproject/ktd/internal/gctune"
	"github.com/ktdproject/ktd/internal/proctune"
	"github.com/ktdproject/ktd/ktserver"
)

// Version is ktd's own version.
const Version = "0.1.0"

// daemonEnv marks the re-executed child of -dmn.
const daemonEnv = "KTD_DAEMON_CHILD"

// beforeServe, when set, runs once Main has decided to serve: the ktd
// command's main sets it to proctune.KeepSysmonAwake, which may execute
// the program again (tests calling Main in-process leave it nil).
var beforeServe func()

// Main runs ktd with the command-line arguments args (without the program
// name) and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "ulog" {
		return ulogMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "verify" {
		return verifyMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "import" {
		return importMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "export" {
		return exportMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "recover" {
		return recoverMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "health" {
		return healthMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "version" {
		return versionMain(args[1:], stdout, stderr)
	}
	o, err := Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "ktd: %v\n", err)
		if errors.Is(err, ErrUsage) {
			fmt.Fprint(stderr, Usage)
		}
		return 1
	}
	if o.Version {
		rev, _ := buildRevision(debug.ReadBuildInfo())
		fmt.Fprintf(stdout, "Kyoto Tycoon 0.9.56 (2.19) on %s (ktd %s %s, %s)\n", osName(), Version, shortRevision(rev), runtime.Version())
		return 0
	}
	if o.Help {
		fmt.Fprint(stdout, Help())
		return 0
	}
	if o.Daemon && os.Getenv(daemonEnv) == "" {
		return daemonize(stderr)
	}
	if beforeServe != nil {
		beforeServe()
	}
	if err := Run(context.Background(), o, stdout); err != nil {
		fmt.Fprintf(stderr, "ktd: %v\n", err)
		return 1
	}
	return 0
}

// reload is SIGHUP: the log file is reopened and every TLS certificate and key
// read again from its files. A pair that fails to load is logged, and the one in use
// stays; nothing else changes (databases, flags and CA bundles need a restart).
func reload(ctx context.Context, logger *slog.Logger, logw *logFile, reloaders []*certReloader) {
	if err := logw.Reopen(); err != nil {
		logger.Error("reopen log", "err", err)
	}
	for _, r := range reloaders {
		if err := r.Reload(); err != nil {
			logger.Error("reload TLS certificate: keeping the one in use", "err", err)
			continue
		}
		attrs := []any{"cert", r.certPath}
		if leaf, err := r.Leaf(); err == nil {
			attrs = append(attrs, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		logger.Log(ctx, LevelSystem, "reloaded TLS certificate", attrs...)
	}
}

func osName() string {
	if runtime.GOOS == "linux" {
		return "Linux"
	}
	return runtime.GOOS
}

// limitAttrs returns the limits in force, as the start-up log line shows them: the
// values given, or ktserver's defaults ("none" for a bound removed with a negative value).
func limitAttrs(cfg ktserver.Config) []any {
	sz := func(v, def int64) string {
		switch {
		case v == 0:
			return formatSize(def)
		case v < 0:
			return "none"
		}
		return formatSize(v)
	}
	conns := "none"
	if cfg.MaxConns > 0 {
		conns = strconv.Itoa(cfg.MaxConns)
	}
	recs := strconv.FormatInt(ktserver.DefaultMaxRecords, 10)
	if cfg.MaxRecords > 0 {
		recs = strconv.FormatInt(cfg.MaxRecords, 10)
	} else if cfg.MaxRecords < 0 {
		recs = "none"
	}
	return []any{
		"maxkey", sz(cfg.MaxKeySize, ktserver.DefaultMaxKeySize),
		"maxval", sz(cfg.MaxValueSize, ktserver.DefaultMaxValueSize),
		"maxbody", sz(cfg.MaxBodySize, ktserver.DefaultMaxBodySize),
		"maxrec", recs,
		"maxinflight", sz(cfg.MaxInflightBytes, ktserver.DefaultMaxInflightBytes),
		"maxconn", conns,
		"timeout", cfg.Timeout,
		"idle", cfg.IdleTimeout,
		"txidle", cfg.TxIdleTimeout,
	}
}

// daemonize re-executes ktd detached from the terminal in a new session,
// as KT's -dmn does, and returns at once.
func daemonize(stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "ktd: daemonize: %v\n", err)
		return 1
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "ktd: daemonize: %v\n", err)
		return 1
	}
	return 0
}

// Run starts the server the options describe and serves until ctx ends or
// a stop signal arrives (SIGINT, SIGTERM, SIGUSR2). SIGUSR1 reopens the log
// file; SIGHUP reopens it too and reloads the TLS certificates and keys.
func Run(ctx context.Context, o *Options, stdout io.Writer) error {
	logw, err := openLog(o.LogPath, stdout)
	if err != nil {
		return err
	}
	defer logw.Close()
	logger := newLogger(logw, o.LogLevel)

	for _, n := range o.Notices {
		logger.Log(ctx, LevelSystem, n)
	}
	if o.ScriptPath != "" {
		if _, err := os.Stat(o.ScriptPath); err != nil {
			return fmt.Errorf("%s: no such file", o.ScriptPath)
		}
	}
	if st, err := os.Stat(o.CommandDir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s: no such directory", o.CommandDir)
	}

	cfg, reloaders, err := serverConfig(o)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	reg := prometheus.NewRegistry()
	if o.MetricsAddr != "" {
		// The scheduler's figures include GOMAXPROCS (see proctune) and how
		// long runnable goroutines waited.
		reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Registry = reg
	}
	logger.Log(ctx, LevelSystem, "starting ktd", append([]any{"version", Version, "addr", o.Addr(),
		"dbs", cfg.DBs, "threads", cfg.Threads, "nosync", cfg.NoSync, "readonly", cfg.ReadOnly},
		limitAttrs(cfg)...)...)

	// Signals are caught from here on: one that arrives while the databases open (the
	// port already accepts connections) stops the server once it is up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR2, syscall.SIGUSR1, syscall.SIGHUP)
	defer signal.Stop(sigs)

	// The port first: a server that cannot listen must not create database directories.
	ln, err := net.Listen("tcp", o.Addr())
	if err != nil {
		return err
	}
	srv, err := ktserver.New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	if o.PIDPath != "" {
		if err := os.WriteFile(o.PIDPath, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
			srv.Close()
			return fmt.Errorf("write pid file: %w", err)
		}
		defer os.Remove(o.PIDPath)
	}

	var wg sync.WaitGroup
	var metricsSrv *http.Server
	if o.MetricsAddr != "" {
		if metricsSrv, err = serveMetrics(ctx, logger, o.MetricsAddr, reg, &wg); err != nil {
			srv.Close()
			return err
		}
	}

	// Space out garbage collections while the live heap is small (see
	// gctune): GOGC up to 800 while the live heap is below 32 MiB, unless GOGC is set.
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	wg.Go(func() { gctune.Run(gcCtx, 32<<20, 800, time.Second) })
	// Run on one P while the process is quiet (under a quarter of a processor; see
	// proctune), unless GOMAXPROCS is set.
	wg.Go(func() { proctune.Run(gcCtx, 100*time.Millisecond) })

	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })

	runErr := waitForStop(ctx, logger, logw, sigs, serveErr, reloaders)
	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		metricsSrv.Shutdown(sctx)
		cancel()
	}
	if err := srv.Close(); err != nil && runErr == nil {
		runErr = err
	}
	stopGC()
	wg.Wait()
	if errors.Is(runErr, ktserver.ErrServerClosed) {
		runErr = nil
	}
	logger.Log(ctx, LevelSystem, "ktd stopped")
	return runErr
}

// serverConfig is the server configuration the command line asks for,
// with the reloaders of its TLS files.
func serverConfig(o *Options) (ktserver.Config, []*certReloader, error) {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = o.DBs
	cfg.Threads = o.Threads
	cfg.Timeout = o.Timeout
	cfg.NoSync = o.NoSync
	cfg.ReadOnly = o.ReadOnly
	cfg.ScriptPath = o.ScriptPath
	if o.ScriptTime != 0 {
		cfg.ScriptTimeout = o.ScriptTime
	}
	cfg.ScriptMaxInstructions = o.ScriptInstr
	if o.ScriptMem != 0 {
		cfg.ScriptMaxMemory = o.ScriptMem
	}
	cfg.RTSPath = o.RTSPath
	if o.SID >= 0 {
		cfg.SID = uint16(o.SID)
	}
	cfg.ULog = o.ULogDir != ""
	cfg.ULogDir = o.ULogDir
	cfg.ULogLimit = o.ULogLimit
	if o.MasterHost != "" {
		cfg.MasterAddr = net.JoinHostPort(o.MasterHost, strconv.Itoa(o.MasterPort))
	}
	cfg.ReplInterval = o.ReplIV
	cfg.ReplBootstrap = o.Bootstrap
	applyBoot(o, &cfg)
	if o.ReplVerify != 0 {
		cfg.ReplVerifyInterval = o.ReplVerify
	}
	cfg.ULogRetention = o.ULogAge
	if o.TxIdle != 0 {
		cfg.TxIdleTimeout = o.TxIdle
	}
	cfg.CommandDir = o.CommandDir
	cfg.SyncInterval = time.Duration(o.SyncEvery * float64(time.Second))
	cfg.SyncHard = o.SyncHard
	cfg.SnapshotDir = o.Snapshot
	if o.SnapshotIV > 0 {
		cfg.SnapshotInterval = time.Duration(o.SnapshotIV * float64(time.Second))
	}
	if o.MaxConns != 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.MaxKeySize, cfg.MaxValueSize, cfg.MaxBodySize = o.MaxKey, o.MaxValue, o.MaxBody
	cfg.MaxRecords, cfg.MaxInflightBytes, cfg.IdleTimeout = o.MaxRecords, o.MaxInflight, o.Idle
	reloaders, err := applyTLS(o, &cfg)
	if err != nil {
		return ktserver.Config{}, nil, err
	}
	return cfg, reloaders, nil
}

// serveMetrics serves /metrics (reg) and /debug/pprof on addr until the
// returned server is shut down.
func serveMetrics(ctx context.Context, logger *slog.Logger, addr string, reg *prometheus.Registry, wg *sync.WaitGroup) (*http.Server, error) {
	mln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() { metricsSrv.Serve(mln) })
	logger.Log(ctx, LevelSystem, "serving metrics", "addr", mln.Addr().String())
	return metricsSrv, nil
}

// waitForStop serves signals until ctx ends, Serve returns (its error is
// returned) or a stopping signal arrives: SIGUSR1 reopens the log, SIGHUP
// reloads the TLS files and reopens the log.
func waitForStop(ctx context.Context, logger *slog.Logger, logw *logFile, sigs <-chan os.Signal, serveErr <-chan error, reloaders []*certReloader) error {
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-serveErr:
			runErr = err
			break loop
		case sig := <-sigs:
			switch sig {
			case syscall.SIGUSR1:
				if err := logw.Reopen(); err != nil {
					logger.Error("reopen log", "err", err)
				}
				continue
			case syscall.SIGHUP:
				reload(ctx, logger, logw, reloaders)
				continue
			}
			logger.Log(ctx, LevelSystem, "stopping on signal", "signal", sig.String())
			break loop
		}
	}
	return runErr
}
