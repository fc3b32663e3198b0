// Command cesd keeps Oracle database wallets and schema passwords fresh on
// disk by following Oracle Retail's Credential Exchange Service (CES).
//
// main only wires packages together and turns outcomes into exit codes:
// 0 success, 2 usage or configuration error (the message names the key),
// 1 any other failure. cesd run reports a configuration error with 78
// instead of 2 (see exitRunConfig).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
	// exitRunConfig is a configuration error of cesd run: EX_CONFIG from
	// sysexits.h. The Go runtime itself exits 2 on a panic, a fatal error
	// and SIGABRT (what the systemd watchdog sends), and a supervisor must
	// restart those; RestartPreventExitStatus=78 stops only a config loop.
	exitRunConfig = 78
)

func main() {
	if limit, ok := memoryLimit(os.LookupEnv, os.ReadFile, "/"); ok {
		debug.SetMemoryLimit(limit)
	}
	c := &cli{env: os.LookupEnv, environ: envNames(os.Environ()), stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(c.main(os.Args[1:]))
}

// cli carries what every subcommand may use; nothing here is global so that
// tests can run commands in-process.
type cli struct {
	env     envFunc
	environ []string // the names in the environment, to catch CESD_* typos; nil: not checked
	stdout  io.Writer
	stderr  io.Writer
}

type command struct {
	name    string
	summary string
	run     func(c *cli, ctx context.Context, args []string) int
}

func commands() []command {
	return []command{
		{"run", "run the daemon", (*cli).cmdRun},
		{"fetch", "fetch once, write the generation atomically, exit", (*cli).cmdFetch},
		{"endpoints", "list | register URL | unregister URL: manage CES notification endpoints", (*cli).cmdEndpoints},
		{"doctor", "check the configuration against CES step by step: URL, DNS, TCP, TLS, token, list, dry-run fetch, callback", (*cli).cmdDoctor},
		{"status", "ask the running daemon (over metrics_listen) what is live, how the last refresh went, what comes next", (*cli).cmdStatus},
		{"inspect", "report on a wallet folder: generation, dates, files, certificates (never passwords)", (*cli).cmdInspect},
		{"demo", "zero-config demo: an in-process CES simulator and the daemon, in ./cesd-demo/", (*cli).cmdDemo},
		{"healthcheck", "exit 0 if the local daemon's /readyz says a wallet is live (for exec probes)", (*cli).cmdHealthcheck},
		{"version", "print version, commit and Go version", (*cli).cmdVersion},
	}
}

// run is main for tests: env is looked up but its names are not checked.
func run(args []string, env envFunc, stdout, stderr io.Writer) int {
	return (&cli{env: env, stdout: stdout, stderr: stderr}).main(args)
}

func (c *cli) main(args []string) int {
	if len(args) == 0 {
		c.usage(c.stderr)
		return exitConfig
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		c.usage(c.stdout)
		return exitOK
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return cmd.run(c, ctx, args[1:])
		}
	}
	names := make([]string, 0, len(commands()))
	for _, cmd := range commands() {
		names = append(names, cmd.name)
	}
	msg := fmt.Sprintf("cesd: unknown command %q", args[0])
	if near := nearest(args[0], names); editDistance(args[0], near) <= 2 {
		msg += fmt.Sprintf("; did you mean %q?", near)
	}
	fmt.Fprintln(c.stderr, msg+" ('cesd --help' lists the commands)")
	return exitConfig
}

// fail prints an error and maps it to an exit code. Errors that carry an
// operator hint (CES errors) print it on a second line.
func (c *cli) fail(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var many configErrors
	if errors.As(err, &many) {
		for _, e := range many {
			fmt.Fprintf(c.stderr, "cesd: %v\n", e)
		}
		return exitConfig
	}
	var ce *configError
	if errors.As(err, &ce) {
		fmt.Fprintf(c.stderr, "cesd: %v\n", err)
		return exitConfig
	}
	fmt.Fprintf(c.stderr, "cesd: %v\n", err)
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		fmt.Fprintf(c.stderr, "hint: %s\n", h.Hint())
	}
	return exitFail
}

// failRun is fail for cesd run: a configuration error exits 78, not 2.
func (c *cli) failRun(err error) int {
	if code := c.fail(err); code != exitConfig {
		return code
	}
	return exitRunConfig
}

func (c *cli) cmdVersion(_ context.Context, args []string) int {
	fs := c.ownFlagSet("version", "")
	if pos, err := c.parseArgs(fs, args); err != nil {
		return c.fail(err)
	} else if len(pos) > 0 {
		return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("version takes no arguments, got %q", pos)})
	}
	fmt.Fprintf(c.stdout, "cesd %s (commit %s, %s, %s/%s)\n", version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fleetMode := "no (build with -tags fleet)"
	if fleetBuilt {
		fleetMode = "yes"
	}
	fmt.Fprintf(c.stdout, "fleet: %s\n", fleetMode)
	return exitOK
}

func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return `unknown: build with -ldflags "-X main.commit=$(git rev-parse HEAD)"`
}
