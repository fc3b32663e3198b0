package refresh

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a refresh leaves a connection's goroutines
// behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
