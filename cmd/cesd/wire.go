package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/certinfo"
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
		MaxBodyBytes: cfg.MaxBodyBytes,
		Registerer:   reg,
	}, nil
}

func walletConfig(cfg *Config) wallet.Config {
	return wallet.Config{
		Dir: cfg.WalletDir, Keep: cfg.KeepGenerations, Limits: walletLimits(cfg), SyncFS: cfg.SyncFS,
		FileMode: cfg.Access.FileMode, DirMode: cfg.Access.DirMode, Owner: cfg.Access.ownership(),
		StrictModes: cfg.StrictModes,
	}
}

func walletLimits(cfg *Config) wallet.Limits {
	lim := wallet.DefaultLimits()
	lim.MaxFileBytes, lim.MaxTotalBytes = cfg.MaxFileBytes, cfg.MaxWalletBytes
	return lim
}

// newWriter opens the wallet folder for writing, once cesd is known to be
// able to give its files the configured owner and group.
func newWriter(cfg *Config, log *zap.Logger) (*wallet.Writer, error) {
	id, err := processIdentity()
	if err != nil {
		return nil, err
	}
	if err := checkAccess(cfg.Access, id); err != nil {
		return nil, err
	}
	w, err := wallet.NewWriter(walletConfig(cfg), log.Named("wallet"))
	if errors.Is(err, wallet.ErrUnsafeMode) {
		return nil, &configError{Key: "wallet_dir", Msg: err.Error()}
	}
	if err != nil {
		return nil, fmt.Errorf("wallet folder: %w", err)
	}
	return w, nil
}

func refreshConfig(cfg *Config) refresh.Config {
	return refresh.Config{
		WalletDir:      cfg.WalletDir,
		SQLNetDir:      cfg.SQLNetDir,
		WalletOnly:     cfg.WalletOnly,
		Limits:         walletLimits(cfg),
		WalletPassword: cfg.WalletPassword,
		RewriteSQLNet:  cfg.RewriteSQLNet,
		PEM:            cfg.EWalletPEM,
		PEMPassword:    cfg.PEMPassword,
	}
}

// newPipeline builds the refresh pipeline on the CES client; w nil makes a
// dry run (doctor).
func newPipeline(cfg *Config, client *ces.Client, w refresh.Writer, reg prometheus.Registerer, log *zap.Logger) (*refresh.Pipeline, error) {
	return refresh.New(refreshConfig(cfg), refresh.Deps{CES: client, Writer: w, Logger: log, Registerer: reg})
}

// certObserver keeps the certificate metrics current.
type certObserver struct{ *certinfo.Exporter }

func (c certObserver) Swapped(ev daemon.SwapEvent) { c.Update(ev.WalletDir, ev.Result.WalletPassword) }
