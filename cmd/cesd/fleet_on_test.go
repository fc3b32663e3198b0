//go:build fleet

package main

import (
	"strings"
	"testing"
)

func TestFleetVersionSaysYes(t *testing.T) {
	code, out, _ := runEnviron([]string{"version"}, nil)
	if code != exitOK || !strings.Contains(out, "fleet: yes") {
		t.Fatalf("exit %d: %s", code, out)
	}
}
