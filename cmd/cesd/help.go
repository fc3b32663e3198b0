package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// cesKeys are the keys of anything that talks to CES or IAM.
var cesKeys = []string{"base_url", "retail_home_url", "base_url_suffix", "token_url", "client_id",
	"client_secret_file", "scope", "ca_file", "tenant_id", "request_timeout", "max_body_bytes"}

// daemonOnlyKeys are used by cesd run alone: listeners, timers, hooks.
var daemonOnlyKeys = []string{"listen", "listen_tls_cert_file", "listen_tls_key_file", "callback_url", "callback_auth_file",
	"extra_endpoints", "metrics_listen", "poll_interval", "jitter", "min_interval", "register_interval",
	"on_change", "hook_timeout", "reload_signal", "reload_pid_file", "unregister_on_exit", "shutdown_timeout",
	"secret_name", "secret_labels", "secret_owner", "namespace", "kubeconfig", "lease_name", "callback_service"}

// helpKeys says which keys a command's --help lists: the ones it uses. Every
// command still accepts every key, so one config file, one environment
// serves them all. A command not listed here shows every key.
func helpKeys(command string) func(key string) bool {
	in := func(list ...[]string) func(string) bool {
		return func(k string) bool { return slices.Contains(slices.Concat(list...), k) }
	}
	switch command {
	case "fetch":
		return func(k string) bool { return !slices.Contains(daemonOnlyKeys, k) }
	case "doctor":
		return in(cesKeys, []string{"callback_url", "callback_auth_file", "listen"})
	case "endpoints":
		return in(cesKeys, []string{"callback_url", "callback_auth_file"})
	case "inspect":
		return in([]string{"wallet_dir", "wallet_password_file"})
	case "healthcheck", "status":
		return in([]string{"metrics_listen"})
	}
	return func(string) bool { return true }
}

// usage is the top-level help.
func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: cesd <command> [flags]\n\nCommands:")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintln(w, "\nRun 'cesd <command> --help' for the flags of a command.")
	fmt.Fprintln(w, "Every flag --some-key is also env CESD_SOME_KEY and YAML key some_key (precedence: flag, env, file, default).")
	fmt.Fprintln(w, "Secrets are never flags: use client_secret_file or env CESD_CLIENT_SECRET.")
}

// flagSet returns a FlagSet carrying every config key, so all commands
// accept the same configuration; its help lists the keys the command uses.
func (c *cli) flagSet(name, positional string) *flag.FlagSet {
	fs := c.ownFlagSet(name, positional)
	registerConfigFlags(fs)
	return fs
}

// ownFlagSet is a FlagSet for a command's own flags only. Its help goes to
// stdout; the flag package itself prints nothing (errors come back to the
// command, which reports them in one line).
func (c *cli) ownFlagSet(name, positional string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { c.printHelp(fs, name, positional) }
	return fs
}

// parseArgs parses flags and positional arguments. On -h or --help it
// prints the help to stdout and returns flag.ErrHelp, which fail maps to 0.
func (c *cli) parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
	}
	return pos, err
}

// loadConfig is what every configured command starts with: flags, the
// environment's names (a CESD_* typo is an error), then the configuration.
func (c *cli) loadConfig(fs *flag.FlagSet, args []string, n needs) (*Config, []string, error) {
	pos, err := c.parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if err := checkEnvNames(c.environ); err != nil {
		return nil, nil, err
	}
	cfg, err := configFrom(fs, c.env, n)
	return cfg, pos, err
}

func (c *cli) printHelp(fs *flag.FlagSet, name, positional string) {
	w := c.stdout
	fmt.Fprintf(w, "Usage: cesd %s %s[flags]\n", name, positional)
	for _, cmd := range commands() {
		if cmd.name == name {
			fmt.Fprintf(w, "\n%s\n", cmd.summary)
		}
	}
	shown := helpKeys(name)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nFlags:")
	secrets := false
	fs.VisitAll(func(f *flag.Flag) {
		typ, help := flag.UnquoteUsage(f)
		if k, ok := keyByName(strings.ReplaceAll(f.Name, "-", "_")); ok {
			if !shown(k.name) {
				return
			}
			typ = typeName(k)
			secrets = secrets || k.name == "client_secret_file"
		} else if f.Name == "config" {
			typ = "file"
		} else if f.DefValue != "" && f.DefValue != "false" {
			help += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  --%s %s\t%s\n", f.Name, typ, help)
	})
	fmt.Fprintf(tw, "  -h, --help\tthis help\n")
	tw.Flush()
	if fs.Lookup("config") != nil {
		fmt.Fprintln(w, "\nEvery flag --some-key is also env CESD_SOME_KEY and YAML key some_key (precedence: flag, env, file, default).")
	}
	if secrets {
		fmt.Fprintln(w, "Secrets are never flags: use client_secret_file or env CESD_CLIENT_SECRET.")
	}
}

// typeName is how a key's type reads in --help.
func typeName(k keyDef) string {
	switch {
	case k.kind != kString:
	case strings.HasSuffix(k.name, "_file"):
		return "file"
	case strings.HasSuffix(k.name, "_url"):
		return "url"
	case strings.HasSuffix(k.name, "_dir"):
		return "dir"
	case k.name == "listen" || strings.HasSuffix(k.name, "_listen"):
		return "host:port"
	case strings.HasSuffix(k.name, "_bytes"):
		return "size"
	}
	switch k.kind {
	case kDuration:
		return "duration"
	case kInt:
		return "int"
	case kBool:
		return "" // a bare --key means true
	case kList:
		return "list"
	}
	return "string"
}
