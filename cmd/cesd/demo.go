package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/daemon"
)

// cmdDemo is the zero-config first run: the CES simulator in-process on
// loopback, the real daemon against it, a rotation every few seconds, and a
// plain-words account of what happens. It is the only production path that
// imports cestest.
func (c *cli) cmdDemo(ctx context.Context, args []string) int {
	fs := c.ownFlagSet("demo", "")
	dir := fs.String("dir", "cesd-demo", "folder for the demo's wallet, logs and secrets")
	every := fs.Duration("rotate-every", 5*time.Second, "how often the simulated CES rotates")
	if pos, err := c.parseArgs(fs, args); err != nil {
		return c.fail(err)
	} else if len(pos) > 0 {
		return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("demo takes no arguments, got %q", pos)})
	}
	if *every < time.Second {
		return c.fail(&configError{Key: "rotate-every", Msg: "must be at least 1s"})
	}
	if err := c.demo(ctx, *dir, *every); err != nil {
		return c.fail(err)
	}
	return exitOK
}

func (c *cli) demo(ctx context.Context, dir string, every time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo folder: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	sim := cestest.NewServer(cestest.Options{BasePath: "/rgbu-common-demo-prod"})
	defer sim.Close()

	secretFile := filepath.Join(abs, "client_secret")
	caFile := filepath.Join(abs, "ces-ca.pem")
	logFile := filepath.Join(abs, "cesd.log")
	hookLog := filepath.Join(abs, "hook.log")
	if err := os.WriteFile(secretFile, []byte("cestest-secret"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(caFile, sim.CACertPEM(), 0o600); err != nil {
		return err
	}
	// The hook appends with the shell's umask; create its log 0600 first,
	// like every other file the demo writes.
	if err := createPrivate(hookLog); err != nil {
		return err
	}
	cbPort, err := freePort()
	if err != nil {
		return err
	}
	opsPort, err := freePort()
	if err != nil {
		return err
	}
	callback := "http://127.0.0.1:" + cbPort + "/cesd/notify"

	// The demo goes through the same config path as cesd run, but reads no
	// CESD_* variable and no config file: it must not pick up production
	// settings from the caller's environment.
	fs := c.flagSet("demo", "")
	cfg, _, err := loadConfig(fs, []string{
		"--base-url", sim.URL, "--token-url", sim.TokenURL,
		"--client-id", "cestest-client", "--client-secret-file", secretFile, "--ca-file", caFile,
		"--wallet-dir", filepath.Join(abs, "wallet"),
		"--listen", "127.0.0.1:" + cbPort, "--callback-url", callback,
		"--extra-endpoints", "mailto:dba-oncall@example.com",
		"--metrics-listen", "127.0.0.1:" + opsPort,
		"--poll-interval", (3 * every).String(), "--register-interval", (4 * every).String(), "--min-interval", "100ms",
		"--on-change", `echo "$(date +%T) generation $CESD_GENERATION live, change=$CESD_CHANGE" >> ` + strconv.Quote(hookLog),
		"--log-level", "debug", "--config", "",
	}, noEnv, needs{ces: true, wallet: true})
	if err != nil {
		return err
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	log := newLogger(cfg, lf)
	cc, err := cesConfig(cfg, nil)
	if err != nil {
		return err
	}

	say := func(format string, a ...any) {
		fmt.Fprintf(c.stdout, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	cwd, _ := os.Getwd()
	rel := func(p string) string {
		if r, err := filepath.Rel(cwd, p); err == nil && len(r) < len(p) {
			return "./" + r
		}
		return p
	}
	pending := make(chan string, 1) // what the narrator is waiting to see
	swapped := make(chan string, 8) // the wallet name of every swap, so the rotator can wait for the poll

	reg := newRegistry()
	d, listener, err := buildDaemon(cfg, cc, log.With(zap.String("mode", "demo")), reg, reg,
		extras{observers: []daemon.Observer{&narrator{say: say, dir: rel(cfg.WalletDir), sim: sim, pending: pending, swapped: swapped}}})
	if err != nil {
		return err
	}
	defer listener.Close()
	// The banner and the rotator end with the daemon, before the last word,
	// so nothing they print lands after it.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		select {
		case <-d.Started():
		case <-ctx.Done():
			return
		}
		fmt.Fprintf(c.stdout, `cesd demo: a simulated Oracle CES and the real cesd daemon, on this machine only.

  CES simulator  %s  (in-process, TLS, OAuth2)
  wallet         %s   e.g.  ls -l %[2]s ; cat %[2]s/manifest.json
  metrics        http://%s/metrics   (readiness: /readyz; cesd status --metrics-listen %[3]s)
  callbacks      %s   (registered with the simulator)
  logs           %s   (JSON, debug level)
  on_change      %s   (the hook appends a line per new generation)

CES rotates every %s; each rotation calls cesd back, and cesd swaps the new
generation in atomically. Every fourth callback is lost on purpose: cesd's
fallback poll (every %s) finds that rotation instead. Press Ctrl-C to stop.

`, sim.URL, rel(cfg.WalletDir), d.OpsAddr(), callback, rel(logFile), rel(hookLog), every, cfg.PollInterval)
	})
	wg.Go(func() { c.rotate(ctx, sim, every, cfg.PollInterval, pending, swapped, say) })
	err = d.Run(ctx)
	cancel()
	wg.Wait()
	fmt.Fprintf(c.stdout, "\nstopped. The last wallet stays in %s; logs are in %s.\n", rel(cfg.WalletDir), rel(logFile))
	return err
}

// rotate plays CES: it rotates on a timer, cycling through the change kinds,
// and every fourth time loses the callback. It then rotates no more until
// cesd has swapped that generation in, so what the narration announces (the
// poll finds it) is what happens, not a later callback covering for it.
func (c *cli) rotate(ctx context.Context, sim *cestest.Server, every, poll time.Duration, pending, swapped chan string, say func(string, ...any)) {
	kinds := []string{"credentials", "wallet", "all"}
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		kind := kinds[n%len(kinds)]
		lost := n%4 == 3
		note := "CES rotated " + describe(kind) + " and called back"
		if lost {
			sim.SetFault(cestest.OpCallback, cestest.Fault{Kind: cestest.LoseCallbacks, Times: 1})
			note = "CES rotated " + describe(kind) + ", the callback was lost, and the fallback poll found it"
		}
		select {
		case <-pending:
		default:
		}
	drain:
		for {
			select {
			case <-swapped:
			default:
				break drain
			}
		}
		pending <- note
		gen := sim.Rotate(kind)
		if !lost {
			say("CES rotated to its generation %d (change=%s)", gen, kind)
			continue
		}
		say("CES rotated to its generation %d (change=%s) and the callback was LOST; cesd's next poll (within %s) will find it", gen, kind, poll+poll/10)
		if !awaitSwap(ctx, swapped, sim.Current().WalletName) {
			return
		}
		t.Reset(every)
	}
}

// awaitSwap waits until the wallet named name is swapped in; false if ctx
// ended first.
func awaitSwap(ctx context.Context, swapped <-chan string, name string) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case got := <-swapped:
			if got == name {
				return true
			}
		}
	}
}

func describe(kind string) string {
	switch kind {
	case "credentials":
		return "the schema passwords"
	case "wallet":
		return "the wallet certificates"
	}
	return "passwords and certificates"
}

// createPrivate creates an empty file readable by its owner only, or
// tightens an existing one.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Chmod(0o600)
}

// freePort asks the kernel for a free loopback port. The demo needs the
// callback port before the listener exists, to build callback_url.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// narrator tells the demo's user each generation that goes live, and why,
// and tells the rotator which wallet went live.
type narrator struct {
	say     func(format string, a ...any)
	dir     string
	sim     *cestest.Server
	pending chan string // what the narrator is waiting to see
	swapped chan string // the wallet name of each swap
}

func (n *narrator) Swapped(ev daemon.SwapEvent) {
	what := "fetched the first generation from CES"
	switch {
	case ev.Loaded:
		what = "found a valid generation on disk; serving it while checking CES"
	case ev.Result.WalletName != n.sim.Current().WalletName:
		what = "caught up with an earlier rotation; the newest follows"
	default:
		select {
		case w := <-n.pending:
			what = w
		default:
		}
	}
	n.say("generation %d is live in %s: %s", ev.Generation, n.dir, what)
	select {
	case n.swapped <- ev.Result.WalletName:
	default:
	}
}
