package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	"go.yaml.in/yaml/v3"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/notify"
	"github.com/cesd/cesd/wallet"

	"github.com/cesd/cesd/ces/endpoint"
)

// configError is a usage or configuration mistake: exit code 2 (78 from
// cesd run, see exitRunConfig), and the message always names the key so the
// operator knows what to fix.
type configError struct {
	Key    string
	Source string
	Msg    string
}

func (e *configError) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("config: %s (from %s): %s", e.Key, e.Source, e.Msg)
	}
	return fmt.Sprintf("config: %s: %s", e.Key, e.Msg)
}

// configErrors is every configuration mistake of one run, so an operator
// fixes them all at once instead of one per attempt.
type configErrors []*configError

func (es configErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (es configErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

type keyKind int

const (
	kString keyKind = iota
	kDuration
	kBool
	kInt
	kList
)

type keyDef struct {
	name string
	kind keyKind
	def  string
	help string
}

// The packages' own defaults, which the key table shows and applies.
var (
	daemonDefaults  = daemon.DefaultConfig()
	walletDefaults  = wallet.DefaultConfig()
	refreshDefaults = refresh.DefaultConfig()
)

// durationString is d as a user writes it: "5m", not "5m0s".
func durationString(d time.Duration) string {
	s := d.String()
	s, _ = strings.CutSuffix(s, "m0s")
	if s != d.String() {
		s += "m"
	}
	return s
}

// sizeString is n in the size syntax of the size keys: "512KiB", "2MiB".
func sizeString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10)
}

// keys is the one table behind flags, CESD_* env and YAML, so a key has the
// same name everywhere. There is deliberately no client_secret key: a secret
// given as a flag would sit in ps output and shell history.
var keys = []keyDef{
	{"base_url", kString, "", "CES base URL, https://home.retail.<region>.ocs.oracle.com/rgbu-common-<customer>-<env>"},
	{"retail_home_url", kString, "", "Retail Home URL (.../rgbu-common-<customer>-<env>-rh), to derive base_url from"},
	{"base_url_suffix", kString, "", "suffix some products add to the derived base URL, such as -rds"},
	{"token_url", kString, "", "OCI IAM token URL, https://idcs-<id>.identity.oraclecloud.com/oauth2/v1/token"},
	{"client_id", kString, "", "OAuth2 client id"},
	{"client_secret_file", kString, "", "file holding the client secret (or env CESD_CLIENT_SECRET, or systemd credential client_secret)"},
	{"scope", kString, "urn:opc:idm:__myscopes__", "OAuth2 scope"},
	{"ca_file", kString, "", "extra PEM roots trusted for CES and IAM, on top of the system roots"},
	{"tenant_id", kString, "", "optional tenantId for the endpoint list call"},
	{"wallet_dir", kString, "/var/lib/cesd/wallet", "output folder for the wallet; empty (--wallet-dir= or YAML \"\") with secret_name in a fleet build: the Secret is the only output (Secret-only mode)"},
	{"wallet_only", kBool, "false", "fetch only the wallet (the fetch-wallet zip), never schema passwords"},
	{"keep_generations", kInt, strconv.Itoa(walletDefaults.Keep), "generations kept on disk, the live one included"},
	{"max_file_bytes", kString, sizeString(walletDefaults.Limits.MaxFileBytes), "cap on one wallet file, decoded (bytes, or with a KiB or MiB suffix)"},
	{"max_wallet_bytes", kString, sizeString(walletDefaults.Limits.MaxTotalBytes), "cap on all wallet files together, decoded (bytes, or with a KiB or MiB suffix)"},
	{"max_body_bytes", kString, sizeString(ces.DefaultMaxBodyBytes), "cap on one answer from CES (bytes, or with a KiB or MiB suffix)"},
	{"strict_modes", kBool, "true", "refuse a wallet_dir, or its parent, writable by group or others (a sticky parent such as /tmp aside)"},
	{"syncfs", kBool, strconv.FormatBool(walletDefaults.SyncFS), "make each generation durable with one syncfs(2) of the wallet's file system (one journal commit) instead of an fsync per file"},
	{"listen", kString, ":8480", "address of the callback listener"},
	{"listen_tls_cert_file", kString, "", "TLS certificate for the callback listener (optional)"},
	{"listen_tls_key_file", kString, "", "TLS key for the callback listener (optional)"},
	{"callback_url", kString, "", "URL registered with CES; its path is the one the listener serves (empty: poll only)"},
	{"callback_auth_file", kString, "", "file holding user:password that callbacks must carry as basic auth; cesd registers callback_url with them"},
	{"extra_endpoints", kList, "", "more endpoints to keep registered, such as mailto: (comma-separated in flags and env)"},
	{"metrics_listen", kString, "127.0.0.1:9480", "address of /metrics, /healthz, /readyz and /status (cesd status)"},
	{"poll_interval", kDuration, durationString(daemonDefaults.PollInterval), "fallback poll period"},
	{"jitter", kDuration, durationString(daemonDefaults.Jitter), "maximum random delay before a triggered fetch (for fleets)"},
	{"min_interval", kDuration, durationString(daemonDefaults.MinInterval), "floor between two fetches"},
	{"register_interval", kDuration, durationString(daemonDefaults.RegisterInterval), "how often the registration with CES is checked and repaired"},
	{"request_timeout", kDuration, durationString(ces.DefaultTimeout), "timeout of each call to CES, IAM or (fleet mode) the Kubernetes API"},
	{"on_change", kString, "", "command run by /bin/sh -c after a new generation is live"},
	{"hook_timeout", kDuration, durationString(daemonDefaults.HookTimeout), "timeout of the on_change command"},
	{"group", kString, "", "group that may read the wallet, a name or GID (with file_mode 0640)"},
	{"owner", kString, "", "user that owns the wallet, a name or UID (cesd must run as root)"},
	{"file_mode", kString, "0600", "mode of the wallet files: 0600, or 0640 with group; folders follow (0700/0750); world bits are refused"},
	{"reload_signal", kString, "", "signal sent after each swap to the process in reload_pid_file, such as SIGHUP"},
	{"reload_pid_file", kString, "", "file holding the PID of the process to signal after each swap"},
	{"unregister_on_exit", kBool, "false", "unregister callback_url on exit (unsafe when replicas share one URL)"},
	{"shutdown_timeout", kDuration, durationString(daemonDefaults.ShutdownTimeout), "bound on a graceful stop"},
	{"wallet_password_file", kString, "", "file holding the wallet password, used when CES sends none"},
	{"rewrite_sqlnet", kBool, strconv.FormatBool(refreshDefaults.RewriteSQLNet), "rewrite sqlnet.ora DIRECTORY=\"?/network/admin\" to sqlnet_dir (Thick clients need it)"},
	{"sqlnet_dir", kString, "", "folder sqlnet.ora's DIRECTORY names, where readers find the wallet (default wallet_dir; in Secret-only mode where apps mount the Secret)"},
	{"ewallet_pem", kBool, strconv.FormatBool(refreshDefaults.PEM), "derive ewallet.pem for python-oracledb and node-oracledb Thin mode"},
	{"pem_password_file", kString, "", "file holding a password to encrypt the key in ewallet.pem (optional)"},
	{"secret_name", kString, "", "fleet mode: write each generation to this Kubernetes Secret, beside wallet_dir, or alone when wallet_dir is empty"},
	{"secret_labels", kList, "", "labels set on the Secret, key=value (comma-separated in flags and env)"},
	{"secret_owner", kString, "", "name of the cesd Deployment (in namespace) made the Secret's owner, so deleting it deletes the Secret (needs get on it)"},
	{"namespace", kString, "", "namespace of the Secret and the Lease (default: the pod's own)"},
	{"kubeconfig", kString, "", "kubeconfig file for the Kubernetes API (empty: in-cluster)"},
	{"lease_name", kString, "", "fleet mode: only the holder of this Lease fetches and writes (identity: env POD_NAME or the hostname)"},
	{"callback_service", kString, "", "fleet mode: selectorless Service whose EndpointSlice the leader points at itself (env POD_IP), so callbacks reach it while every warm replica is ready"},
	{"log_level", kString, "info", "debug, info, warn or error"},
	{"log_format", kString, "json", "json or console"},
}

func keyByName(name string) (keyDef, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return keyDef{}, false
}

func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }
func envName(key string) string  { return "CESD_" + strings.ToUpper(key) }

// setting is one resolved key: its raw value and where it came from.
type setting struct {
	raw    string
	list   []string
	source string
}

// settings holds every key after precedence (flag, env, YAML, default) is
// applied; typed parsing happens in build.
type settings map[string]setting

// envFunc is os.LookupEnv, injectable for tests.
type envFunc func(string) (string, bool)

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// registerConfigFlags adds one flag per key plus --config. Values are read
// back through fs.Visit so that only flags actually given take precedence.
func registerConfigFlags(fs *flag.FlagSet) {
	fs.String("config", "", "YAML config file (env CESD_CONFIG)")
	for _, k := range keys {
		help := k.help
		if k.def != "" {
			help += " (default " + k.def + ")"
		}
		help += " [env " + envName(k.name) + "]"
		if k.kind == kBool {
			fs.Var(&boolFlag{}, flagName(k.name), help)
			continue
		}
		fs.String(flagName(k.name), "", help)
	}
}

// boolFlag lets a boolean key be given as --key as well as --key=false,
// while keeping the raw text for the one typed parser in build.
type boolFlag struct{ v string }

func (b *boolFlag) String() string     { return b.v }
func (b *boolFlag) Set(s string) error { b.v = s; return nil }
func (b *boolFlag) IsBoolFlag() bool   { return true }

// resolve applies the precedence rules. fs must have been parsed.
func resolve(fs *flag.FlagSet, env envFunc) (settings, error) {
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })

	path, pathSrc := given["config"], "flag --config"
	if path == "" {
		path, _ = env("CESD_CONFIG")
		pathSrc = "env CESD_CONFIG"
	}
	file := map[string]yaml.Node{}
	if path != "" {
		var err error
		if file, err = readYAML(path); err != nil {
			return nil, &configError{Key: "config", Source: pathSrc, Msg: err.Error()}
		}
	}

	s := settings{}
	for _, k := range keys {
		if v, ok := given[flagName(k.name)]; ok {
			s[k.name] = setting{raw: v, list: splitList(v), source: "flag --" + flagName(k.name)}
			continue
		}
		// An empty variable counts as unset, so "CESD_BASE_URL=" in a unit
		// file does not blank the YAML value.
		if v, ok := env(envName(k.name)); ok && v != "" {
			s[k.name] = setting{raw: v, list: splitList(v), source: "env " + envName(k.name)}
			continue
		}
		if n, ok := file[k.name]; ok {
			st, err := fromNode(k, n)
			if err != nil {
				return nil, &configError{Key: k.name, Source: path, Msg: err.Error()}
			}
			s[k.name] = st
			continue
		}
		s[k.name] = setting{raw: k.def, list: splitList(k.def), source: "default"}
	}
	return s, nil
}

func readYAML(path string) (map[string]yaml.Node, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	out := map[string]yaml.Node{}
	if len(bytes.TrimSpace(data)) == 0 {
		return out, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return out, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: top level must be a mapping of keys", path)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		name := root.Content[i].Value
		if name == "client_secret" {
			return nil, fmt.Errorf("%s line %d: key %q is not accepted: put the secret in client_secret_file or env CESD_CLIENT_SECRET", path, root.Content[i].Line, name)
		}
		if _, ok := keyByName(name); !ok {
			return nil, fmt.Errorf("%s line %d: unknown key %q", path, root.Content[i].Line, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s line %d: key %q given twice", path, root.Content[i].Line, name)
		}
		out[name] = *root.Content[i+1]
	}
	return out, nil
}

func fromNode(k keyDef, n yaml.Node) (setting, error) {
	st := setting{source: "config file"}
	switch {
	case k.kind == kList && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return st, fmt.Errorf("line %d: list items must be strings", c.Line)
			}
			st.list = append(st.list, c.Value)
		}
		st.raw = strings.Join(st.list, ",")
	case n.Kind == yaml.ScalarNode:
		st.raw = n.Value
		st.list = splitList(n.Value)
	default:
		return st, fmt.Errorf("line %d: expected a single value", n.Line)
	}
	return st, nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Config is the validated, typed configuration. Each package receives its
// own slice of it (see wire.go), never flags or strings.
type Config struct {
	BaseURL      string
	RetailHome   string // set when BaseURL was derived from retail_home_url
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scope        string
	CAFile       string
	TenantID     string

	WalletDir        string
	KeepGenerations  int
	WalletOnly       bool
	MaxFileBytes     int64
	MaxWalletBytes   int64
	MaxBodyBytes     int64
	StrictModes      bool
	SyncFS           bool
	Listen           string
	ListenTLSCert    string
	ListenTLSKey     string
	CallbackURL      string
	CallbackPath     string
	CallbackUser     string
	CallbackPassword string // secret
	ExtraEndpoints   []string
	MetricsListen    string
	PollInterval     time.Duration
	Jitter           time.Duration
	MinInterval      time.Duration
	RegisterInterval time.Duration
	RequestTimeout   time.Duration
	OnChange         string
	HookTimeout      time.Duration
	Access           access
	ReloadSignal     syscall.Signal // 0: none
	ReloadPIDFile    string
	UnregisterOnExit bool
	ShutdownTimeout  time.Duration
	WalletPassword   string
	RewriteSQLNet    bool
	SQLNetDir        string // empty: WalletDir
	EWalletPEM       bool
	PEMPassword      string
	LogLevel         zapcore.Level
	LogFormat        string

	// Fleet mode (wallet/kubesecret, daemon/leader).
	SecretName   string
	SecretLabels map[string]string
	SecretOwner  string
	// WalletStaged: Secret-only mode, WalletDir is the private staging
	// folder cesd run made (staging.go), not a key.
	WalletStaged bool
	Namespace    string
	Kubeconfig   string
	LeaseName    string
	// CallbackService routes callbacks to the leader through its
	// EndpointSlice (fleet mode).
	CallbackService string
}

// needs says which groups of keys a command requires.
type needs struct {
	ces    bool // base_url, token_url, client_id and a secret
	wallet bool // wallet_dir
	// secretOnly accepts an empty wallet_dir with secret_name in a fleet
	// build: cesd run then writes the Secret alone (Config.SecretOnly).
	secretOnly bool
}

// SecretOnly reports Secret-only mode: the Secret is the only output, each
// generation staged in a private folder (staging.go).
func (c *Config) SecretOnly() bool { return c.WalletDir == "" && c.SecretName != "" }

// build turns settings into a Config, checking every key once, here, at
// startup. Secrets are read from files or env only.
func build(s settings, env envFunc, n needs) (*Config, error) {
	p := parser{s: s}
	c := &Config{
		BaseURL:          strings.TrimRight(p.str("base_url"), "/"),
		TokenURL:         p.str("token_url"),
		ClientID:         p.str("client_id"),
		Scope:            p.str("scope"),
		CAFile:           p.str("ca_file"),
		TenantID:         p.str("tenant_id"),
		WalletDir:        p.str("wallet_dir"),
		KeepGenerations:  p.integer("keep_generations", 1, 100),
		SyncFS:           p.boolean("syncfs"),
		WalletOnly:       p.boolean("wallet_only"),
		MaxFileBytes:     p.size("max_file_bytes", 1<<10, 1<<30),
		MaxWalletBytes:   p.size("max_wallet_bytes", 1<<10, 1<<30),
		MaxBodyBytes:     p.size("max_body_bytes", 1<<10, 1<<30),
		StrictModes:      p.boolean("strict_modes"),
		Listen:           p.str("listen"),
		ListenTLSCert:    p.str("listen_tls_cert_file"),
		ListenTLSKey:     p.str("listen_tls_key_file"),
		CallbackURL:      p.str("callback_url"),
		ExtraEndpoints:   p.s["extra_endpoints"].list,
		MetricsListen:    p.str("metrics_listen"),
		PollInterval:     p.duration("poll_interval", time.Second),
		Jitter:           p.duration("jitter", 0),
		MinInterval:      p.duration("min_interval", time.Millisecond),
		RegisterInterval: p.duration("register_interval", time.Second),
		RequestTimeout:   p.duration("request_timeout", 100*time.Millisecond),
		OnChange:         p.str("on_change"),
		HookTimeout:      p.duration("hook_timeout", 100*time.Millisecond),
		UnregisterOnExit: p.boolean("unregister_on_exit"),
		RewriteSQLNet:    p.boolean("rewrite_sqlnet"),
		EWalletPEM:       p.boolean("ewallet_pem"),
		ShutdownTimeout:  p.duration("shutdown_timeout", 100*time.Millisecond),
		LogFormat:        p.str("log_format"),
	}
	if err := c.LogLevel.UnmarshalText([]byte(p.str("log_level"))); err != nil {
		p.fail("log_level", "want debug, info, warn or error")
	}
	if c.MaxWalletBytes < c.MaxFileBytes {
		p.fail("max_wallet_bytes", fmt.Sprintf("must be at least max_file_bytes (%d)", c.MaxFileBytes))
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		p.fail("log_format", "want json or console")
	}
	c.Access = p.access()
	c.ReloadSignal, c.ReloadPIDFile = p.reload()
	if c.CAFile != "" {
		p.readable("ca_file", c.CAFile)
	}
	if (c.ListenTLSCert == "") != (c.ListenTLSKey == "") {
		p.fail("listen_tls_cert_file", "listen_tls_cert_file and listen_tls_key_file go together")
	}
	if c.CallbackURL != "" {
		path, err := notify.CallbackPath(c.CallbackURL)
		if err != nil {
			p.fail("callback_url", err.Error()+" (want an absolute http:// or https:// URL)")
		}
		c.CallbackPath = path
		c.CallbackURL = p.callbackAuth(c)
	} else if p.str("callback_auth_file") != "" {
		p.fail("callback_auth_file", "needs callback_url")
	}
	p.hostPort("listen", c.Listen)
	p.hostPort("metrics_listen", c.MetricsListen)
	for _, e := range c.ExtraEndpoints {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "mailto") {
			p.fail("extra_endpoints", fmt.Sprintf("%q: want an http, https or mailto URL", e))
		}
	}
	c.SecretName, c.Namespace, c.Kubeconfig, c.LeaseName = p.str("secret_name"), p.str("namespace"), p.str("kubeconfig"), p.str("lease_name")
	c.SecretLabels = p.labels("secret_labels")
	c.SecretOwner = p.str("secret_owner")
	if c.SecretOwner != "" && c.SecretName == "" {
		p.fail("secret_owner", "names the owner of the Secret: set secret_name too")
	}
	if c.SQLNetDir = p.str("sqlnet_dir"); c.SQLNetDir != "" && !filepath.IsAbs(c.SQLNetDir) {
		p.fail("sqlnet_dir", fmt.Sprintf("%q: want an absolute path", c.SQLNetDir))
	}
	if c.LeaseName != "" && c.SecretName == "" {
		p.fail("lease_name", "fleet mode elects the writer of a Secret: set secret_name too")
	}
	if c.CallbackService = p.str("callback_service"); c.CallbackService != "" {
		switch {
		case c.LeaseName == "":
			p.fail("callback_service", "routes callbacks to the holder of a Lease: set lease_name too")
		case c.CallbackURL == "":
			p.fail("callback_service", "routes callbacks, but callback_url is empty (poll only)")
		}
	}
	if c.Kubeconfig != "" {
		p.readable("kubeconfig", c.Kubeconfig)
	}
	if pw := p.str("wallet_password_file"); pw != "" {
		c.WalletPassword = p.secretFile("wallet_password_file", pw)
	}
	if pw := p.str("pem_password_file"); pw != "" {
		c.PEMPassword = p.secretFile("pem_password_file", pw)
	}
	if home := p.str("retail_home_url"); home != "" {
		if c.BaseURL != "" {
			p.fail("retail_home_url", "set base_url or retail_home_url, not both")
		} else if u, err := ces.BaseURLFromRetailHome(home, p.str("base_url_suffix")); err != nil {
			p.fail("retail_home_url", err.Error())
		} else {
			c.BaseURL, c.RetailHome = u, home
		}
	}
	if n.ces {
		c.BaseURL = p.required("base_url", c.BaseURL)
		if c.BaseURL != "" {
			p.remoteURL("base_url", c.BaseURL)
		}
		if c.TokenURL = p.required("token_url", c.TokenURL); c.TokenURL != "" {
			p.remoteURL("token_url", c.TokenURL)
		}
		c.ClientID = p.required("client_id", c.ClientID)
		c.ClientSecret = p.clientSecret(env)
	}
	switch {
	case !n.wallet:
	case c.SecretOnly() && !n.secretOnly:
		p.add(&configError{Key: "wallet_dir", Msg: "required: only cesd run writes the Secret (secret_name), under its Lease; this command writes wallet_dir alone"})
	case c.SecretOnly() && fleetBuilt:
		if c.RewriteSQLNet && c.SQLNetDir == "" {
			p.add(&configError{Key: "sqlnet_dir", Msg: "required in Secret-only mode (empty wallet_dir), where sqlnet.ora cannot name the private staging folder: set it to the folder apps mount the Secret at, or set rewrite_sqlnet: false"})
		}
	case p.required("wallet_dir", c.WalletDir) != "":
		abs, err := filepath.Abs(c.WalletDir)
		if err != nil {
			p.fail("wallet_dir", err.Error())
		}
		c.WalletDir = abs
	}
	if err := p.result(); err != nil {
		return nil, err
	}
	return c, nil
}

// parser records every key's first error so build reads as a list of keys.
type parser struct {
	s    settings
	errs configErrors
}

func (p *parser) fail(key, msg string) {
	p.add(&configError{Key: key, Source: p.s[key].source, Msg: msg})
}

func (p *parser) add(e *configError) {
	for _, old := range p.errs {
		if old.Key == e.Key {
			return // one message per key: the first says what to fix
		}
	}
	p.errs = append(p.errs, e)
}

func (p *parser) result() error {
	switch len(p.errs) {
	case 0:
		return nil
	case 1:
		return p.errs[0]
	}
	return p.errs
}

func (p *parser) str(key string) string { return strings.TrimSpace(p.s[key].raw) }

// required reports a missing key without a source: "(from default)" would
// suggest the default was the problem.
func (p *parser) required(key, v string) string {
	if v == "" {
		p.add(&configError{Key: key, Msg: fmt.Sprintf("required: set --%s, %s or %s in the config file", flagName(key), envName(key), key)})
	}
	return v
}

func (p *parser) duration(key string, min time.Duration) time.Duration {
	d, err := time.ParseDuration(p.str(key))
	if err != nil {
		p.fail(key, fmt.Sprintf("invalid duration %q (want e.g. 30s, 5m)", p.str(key)))
		return 0
	}
	if d < min {
		p.fail(key, fmt.Sprintf("must be at least %s", min))
	}
	return d
}

func (p *parser) integer(key string, min, max int) int {
	v, err := strconv.Atoi(p.str(key))
	if err != nil || v < min || v > max {
		p.fail(key, fmt.Sprintf("want an integer from %d to %d", min, max))
	}
	return v
}

// size parses a byte count: digits, optionally followed by KiB or MiB.
func (p *parser) size(key string, min, max int64) int64 {
	v := p.str(key)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > max/mult || n*mult < min {
		p.fail(key, fmt.Sprintf("%q: want a size from %d KiB to %d MiB, such as 512KiB or 2MiB", p.str(key), min>>10, max>>20))
		return 0
	}
	return n * mult
}

// labels parses key=value pairs; the Secret sink checks their syntax.
func (p *parser) labels(key string) map[string]string {
	var out map[string]string
	for _, kv := range p.s[key].list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			p.fail(key, fmt.Sprintf("%q: want key=value", kv))
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

func (p *parser) boolean(key string) bool {
	v, err := strconv.ParseBool(p.str(key))
	if err != nil {
		p.fail(key, "want true or false")
	}
	return v
}

func (p *parser) readable(key, path string) {
	f, err := os.Open(path)
	if err != nil {
		p.fail(key, fmt.Sprintf("cannot read %s: %v", path, errors.Unwrap(err)))
		return
	}
	f.Close()
}

// remoteURL accepts https anywhere and http only on loopback, so a typo
// cannot send the client secret or a token in clear over a network.
func (p *parser) remoteURL(key, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		p.fail(key, "want an absolute https:// URL")
		return
	case u.User != nil:
		p.fail(key, "must not hold a user or password: credentials go in client_id and client_secret_file")
		return
	case u.RawQuery != "" || u.Fragment != "":
		p.fail(key, "must not have a query or fragment")
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !endpoint.IsLoopback(u.Hostname()) {
			p.fail(key, "http:// is accepted only for loopback hosts; use https://")
		}
	default:
		p.fail(key, "want an https:// URL")
	}
}

// clientSecret looks in client_secret_file, then CESD_CLIENT_SECRET, then the
// systemd credential; the value itself never reaches an error message.
func (p *parser) clientSecret(env envFunc) string {
	if f := p.str("client_secret_file"); f != "" {
		return p.secretFile("client_secret_file", f)
	}
	if v, ok := env("CESD_CLIENT_SECRET"); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	if dir, ok := env("CREDENTIALS_DIRECTORY"); ok && dir != "" {
		path := filepath.Join(dir, "client_secret")
		if _, err := os.Stat(path); err == nil {
			return p.secretFile("client_secret_file", path)
		}
	}
	p.add(&configError{Key: "client_secret_file", Msg: "required: set client_secret_file, env CESD_CLIENT_SECRET, or a systemd credential named client_secret"})
	return ""
}

// secretFile reads a secret. Its errors never repeat the path: a secret
// pasted where its file name belongs would otherwise be printed.
func (p *parser) secretFile(key, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		p.fail(key, fmt.Sprintf("cannot read the file it names: %v", errors.Unwrap(err)))
		return ""
	}
	v := strings.TrimRight(string(data), "\r\n")
	if v == "" {
		p.fail(key, "the file it names is empty")
	}
	return v
}

// callbackAuth refuses credentials inside callback_url (flags and env show
// in /proc/*/cmdline and /proc/*/environ) and takes them from
// callback_auth_file instead. It returns the URL to register: callback_url
// with the credentials as userinfo, which CES sends back as basic auth.
func (p *parser) callbackAuth(c *Config) string {
	u, err := url.Parse(c.CallbackURL)
	if err != nil {
		return c.CallbackURL // CallbackPath has reported it
	}
	if u.User != nil {
		p.fail("callback_url", "must not hold a user or password, which would show in /proc/*/cmdline and /proc/*/environ: put user:password in the file named by callback_auth_file")
		return c.CallbackURL
	}
	f := p.str("callback_auth_file")
	if f == "" {
		return c.CallbackURL
	}
	cred := p.secretFile("callback_auth_file", f)
	if cred == "" {
		return c.CallbackURL // secretFile has reported why
	}
	// "user:password", or a lone token (a user with an empty password).
	user, password, hasPassword := strings.Cut(cred, ":")
	if user == "" {
		p.fail("callback_auth_file", "the file it names must hold one line user:password (or a token)")
		return c.CallbackURL
	}
	c.CallbackUser, c.CallbackPassword = user, password
	u.User = url.User(user)
	if hasPassword {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

func (p *parser) hostPort(key, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		p.fail(key, fmt.Sprintf("%q: want host:port, such as :8480 or 127.0.0.1:9480", addr))
	}
}

// loadConfig parses flags (which may follow or precede positional
// arguments, as in "endpoints register URL --config f"), resolves and
// builds. It returns the positional arguments. Commands use cli.loadConfig,
// which also prints help and checks the environment's names.
func loadConfig(fs *flag.FlagSet, args []string, env envFunc, n needs) (*Config, []string, error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, nil, err
	}
	c, err := configFrom(fs, env, n)
	return c, pos, err
}

// configFrom resolves and builds the configuration of a parsed FlagSet.
func configFrom(fs *flag.FlagSet, env envFunc, n needs) (*Config, error) {
	s, err := resolve(fs, env)
	if err != nil {
		return nil, err
	}
	return build(s, env, n)
}

func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	// The flag package calls Usage on every error; help is printed only when
	// asked for (cli.parseArgs), and errors are reported in one line.
	usage := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = usage }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError(fs, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// flagError turns the flag package's message into one line an operator can
// act on: a secret given as a flag is told where secrets go, and an unknown
// flag gets the nearest known one.
func flagError(fs *flag.FlagSet, err error) error {
	name, unknown := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !unknown {
		return &configError{Key: "flags", Msg: err.Error()}
	}
	name = strings.TrimLeft(name, "-")
	if where := secretHome(name); where != "" {
		return &configError{Key: "--" + name, Msg: "not accepted: secrets are never flags (ps and shell history show them); " + where}
	}
	var flags []string
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
	return &configError{Key: "--" + name, Msg: fmt.Sprintf("unknown flag; did you mean --%s? (cesd %s --help lists the flags)", nearest(name, flags), fs.Name())}
}

// secretHome says where the secret a flag name asks for belongs, or "" if
// the name does not look like a secret.
func secretHome(name string) string {
	name = strings.ReplaceAll(strings.ToLower(name), "_", "-")
	switch {
	case strings.HasPrefix(name, "client-secret"):
		return "put the client secret in a file named by client_secret_file, or in env CESD_CLIENT_SECRET"
	case strings.HasPrefix(name, "wallet-password"):
		return "put the wallet password in a file named by wallet_password_file"
	case strings.HasPrefix(name, "pem-password"):
		return "put the PEM password in a file named by pem_password_file"
	case strings.Contains(name, "secret") || strings.Contains(name, "password"):
		return "secrets come from files (*_file keys) or the environment"
	}
	return ""
}

// knownKeys lists the keys for docs and tests.
func knownKeys() []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.name)
	}
	sort.Strings(out)
	return out
}

// nonKeyEnv are the CESD_* variables that are not configuration keys, each
// with the reason cesd accepts it. Any other CESD_* variable is a typo.
var nonKeyEnv = map[string]string{
	"CESD_CONFIG":        "the YAML config file",
	"CESD_CLIENT_SECRET": "the client secret itself (never a flag)",
	// on_change hooks get these; a hook may run cesd inspect or cesd status.
	"CESD_GENERATION": "set by cesd for on_change hooks",
	"CESD_CHANGE":     "set by cesd for on_change hooks",
	// CI exports the test suite's switches to every process it starts,
	// binaries under test included.
	"CESD_REQUIRE_TOOLS": "test suite switch: tests needing a real tool fail instead of skipping",
	"CESD_SKIP_NODE":     "test suite switch: skip the node-oracledb client check",
}

// checkEnvNames catches typos in the environment the way readYAML catches
// them in the file: every unknown CESD_* variable, with the nearest known one.
func checkEnvNames(names []string) error {
	known := make([]string, 0, len(keys)+2)
	for _, k := range keys {
		known = append(known, envName(k.name))
	}
	known = append(known, "CESD_CONFIG", "CESD_CLIENT_SECRET")
	var errs configErrors
	for _, name := range names {
		if !strings.HasPrefix(name, "CESD_") || slices.Contains(known, name) {
			continue
		}
		if _, ok := nonKeyEnv[name]; ok {
			continue
		}
		near := nearest(name, known)
		msg := "unknown variable; did you mean " + near
		if k := strings.ToLower(strings.TrimPrefix(near, "CESD_")); k != "config" && k != "client_secret" {
			msg += " (key " + k + ")"
		}
		errs = append(errs, &configError{Key: name, Source: "environment", Msg: msg + "?"})
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errs
}

// envNames is the names of a KEY=VALUE environment list, such as os.Environ().
func envNames(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if name, _, ok := strings.Cut(kv, "="); ok && name != "" {
			out = append(out, name)
		}
	}
	return out
}

// nearest returns the candidate with the smallest edit distance to s.
func nearest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := editDistance(s, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance; names are short ASCII, so a
// two-row table is plenty (no dependency for twenty lines).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
