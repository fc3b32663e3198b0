package doctor

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a check leaves a connection's goroutines or
// a probe behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
