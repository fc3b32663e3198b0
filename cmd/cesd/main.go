// Command cesd keeps Oracle database wallets and schema passwords fresh on
// disk by following Oracle Retail's Credential Exchange Service (CES).
//
// main only wires packages together and turns outcomes into exit codes:
// 0 success, 2 usage or configuration error (the message names the key),
// 1 any other failure.
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
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// cli carries what every subcommand may use; nothing here is global so that
// tests can run commands in-process.
type cli struct {
	env    envFunc
	stdout io.Writer
	stderr io.Writer
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
		{"inspect", "report on a wallet folder: generation, dates, files, certificates (never passwords)", (*cli).cmdInspect},
		{"demo", "zero-config demo: an in-process CES simulator and the daemon, in ./cesd-demo/", (*cli).cmdDemo},
		{"healthcheck", "exit 0 if the local daemon's /readyz says a wallet is live (for exec probes)", (*cli).cmdHealthcheck},
		{"version", "print version, commit and Go version", (*cli).cmdVersion},
	}
}

func run(args []string, env envFunc, stdout, stderr io.Writer) int {
	c := &cli{env: env, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		c.usage()
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return cmd.run(c, ctx, args[1:])
		}
	}
	fmt.Fprintf(stderr, "cesd: unknown command %q\n\n", args[0])
	c.usage()
	return exitConfig
}

func (c *cli) usage() {
	fmt.Fprintln(c.stderr, "Usage: cesd <command> [flags]\n\nCommands:")
	for _, cmd := range commands() {
		fmt.Fprintf(c.stderr, "  %-10s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintln(c.stderr, "\nRun 'cesd <command> --help' for the flags of a command.")
	fmt.Fprintln(c.stderr, "Every flag --some-key is also env CESD_SOME_KEY and YAML key some_key (precedence: flag, env, file, default).")
	fmt.Fprintln(c.stderr, "Secrets are never flags: use client_secret_file or env CESD_CLIENT_SECRET.")
}

// flagSet returns a FlagSet carrying every config key, so all commands
// accept the same configuration.
func (c *cli) flagSet(name, positional string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	registerConfigFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: cesd %s %s[flags]\n\nFlags:\n", name, positional)
		fs.PrintDefaults()
	}
	return fs
}

// fail prints an error and maps it to an exit code. Errors that carry an
// operator hint (CES errors) print it on a second line.
func (c *cli) fail(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
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

func (c *cli) cmdVersion(_ context.Context, args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	if err := fs.Parse(args); err != nil {
		return c.fail(&configError{Key: "flags", Msg: err.Error()})
	}
	fmt.Fprintf(c.stdout, "cesd %s (commit %s, %s, %s/%s)\n", version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
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
	return "unknown"
}
