package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/derive"
)

// newLogger builds the process logger: JSON by default, because journald and
// container runtimes index structured fields.
func newLogger(cfg *Config, w io.Writer) *zap.Logger {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(ec)
	if cfg.LogFormat == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), cfg.LogLevel))
}

// rootCAs is the system pool plus ca_file. CES and IAM certificates are
// renewed on a schedule, so we add CA roots and never pin a leaf.
func rootCAs(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &configError{Key: "ca_file", Msg: fmt.Sprintf("cannot read %s: %v", caFile, err)}
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &configError{Key: "ca_file", Msg: fmt.Sprintf("%s holds no PEM certificate", caFile)}
	}
	return pool, nil
}

func cesConfig(cfg *Config, reg prometheus.Registerer) (ces.Config, error) {
	pool, err := rootCAs(cfg.CAFile)
	if err != nil {
		return ces.Config{}, err
	}
	return ces.Config{
		BaseURL:      cfg.BaseURL,
		TokenURL:     cfg.TokenURL,
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Scope:        cfg.Scope,
		TenantID:     cfg.TenantID,
		RootCAs:      pool,
		Timeout:      cfg.RequestTimeout,
		Registerer:   reg,
	}, nil
}

func walletConfig(cfg *Config) wallet.Config {
	return wallet.Config{
		Dir: cfg.WalletDir, Keep: cfg.KeepGenerations, Limits: wallet.DefaultLimits(), SyncFS: cfg.SyncFS,
		FileMode: cfg.Access.FileMode, DirMode: cfg.Access.DirMode, Owner: cfg.Access.ownership(),
	}
}

// walletPasswords picks the password that opens ewallet.p12: CES's
// walletPassword when it sends one (kept in memory only, never written), else
// wallet_password_file.
type walletPasswords struct{ configured, fromCES string }

func (w *walletPasswords) update(creds *ces.Credentials) string {
	if creds != nil && creds.WalletPassword != nil && *creds.WalletPassword != "" {
		w.fromCES = *creds.WalletPassword
	}
	if w.fromCES != "" {
		return w.fromCES
	}
	return w.configured
}

func newDeriver(cfg *Config, reg prometheus.Registerer, log *zap.Logger) (*derive.Deriver, error) {
	return derive.NewDeriver(derive.Options{
		WalletDir:     cfg.WalletDir,
		RewriteSQLNet: cfg.RewriteSQLNet,
		PEM:           cfg.EWalletPEM,
		PEMPassword:   cfg.PEMPassword,
	}, reg, log)
}
