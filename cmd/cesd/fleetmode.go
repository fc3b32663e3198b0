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
	route  daemon.Runner                            // routes callbacks here while leading; nil without callback_service
	// run runs the daemon only while this replica leads; nil without lease_name.
	run func(ctx context.Context, d *daemon.Daemon, metricsListen string, log *zap.Logger) error
}

// pod is what the downward API tells a replica about itself.
type pod struct {
	Name string // its identity in the Lease: POD_NAME, else the hostname (the pod name too in Kubernetes)
	IP   string // POD_IP: where callback_service routes callbacks while this replica leads
	Node string // NODE_NAME: the pod's node, which kube-proxy needs for externalTrafficPolicy: Local
}

func podFromEnv(env func(string) string) pod {
	p := pod{Name: env("POD_NAME"), IP: env("POD_IP"), Node: env("NODE_NAME")}
	if p.Name == "" {
		p.Name, _ = os.Hostname()
	}
	return p
}
