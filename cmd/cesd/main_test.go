//go:build !reliability

// The reliability build has its own TestMain (it builds the binary once).

package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: cesd run
// starts a signal goroutine, the demo a rotator, and every test that runs the
// daemon in-process must stop all of them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
