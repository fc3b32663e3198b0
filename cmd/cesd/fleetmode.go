package main

import (
	"context"
	"os"

	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/wallet"
)

// fleet is fleet mode's wiring, built by newFleet: fleet.go with the build
// tag fleet (client-go, wallet/kubesecret, daemon/leader), fleet_off.go
// without it, so the default binary links no client-go. Its zero value is
// "not in fleet mode".
type fleet struct {
	writer func(disk *wallet.Writer) refresh.Writer // the Secret sink over disk; nil without secret_name
	lease  daemon.Lease                             // who leads, for /status; nil without lease_name
	secret string                                   // "namespace/name" of the Secret, for /status
	// run runs the daemon only while this replica leads; nil without lease_name.
	run func(ctx context.Context, d *daemon.Daemon, metricsListen string, log *zap.Logger) error
}

// leaseIdentity names this replica in the Lease: POD_NAME (from the downward
// API), else the hostname, which is the pod name too in Kubernetes.
func leaseIdentity(env func(string) string) string {
	if id := env("POD_NAME"); id != "" {
		return id
	}
	h, _ := os.Hostname()
	return h
}
