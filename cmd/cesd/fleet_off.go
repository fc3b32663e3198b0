//go:build !fleet

package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
)

// fleetBuilt: this binary has fleet mode (go build -tags fleet).
const fleetBuilt = false

// errNoFleet is the config error for a fleet key in a binary without fleet
// mode: the keys exist in every build, so a config is portable, but only
// the fleet build can act on them.
const errNoFleet = "this cesd was built without fleet mode; build with `go build -tags fleet ./cmd/cesd` (see docs/deploy-kubernetes.md)"

// newFleet without fleet mode: nothing to wire, and a fleet key is an error.
func newFleet(cfg *Config, _ pod, _ *ces.Client, _ *prometheus.Registry, _ *zap.Logger) (fleet, error) {
	switch {
	case cfg.SecretName != "":
		return fleet{}, &configError{Key: "secret_name", Msg: errNoFleet}
	case cfg.LeaseName != "":
		return fleet{}, &configError{Key: "lease_name", Msg: errNoFleet}
	case cfg.CallbackService != "":
		return fleet{}, &configError{Key: "callback_service", Msg: errNoFleet}
	}
	return fleet{}, nil
}
