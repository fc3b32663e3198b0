package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func waitCtx(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestRunGroup(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		parts   func(block chan struct{}) []part
		cancel  bool
		wantErr string
		wantIs  error
	}{
		{
			name:   "clean stop on cancel",
			parts:  func(chan struct{}) []part { return []part{{"a", waitCtx}, {"b", waitCtx}} },
			cancel: true,
		},
		{
			name: "first error cancels the rest",
			parts: func(chan struct{}) []part {
				return []part{{"a", waitCtx}, {"b", func(context.Context) error { return boom }}}
			},
			wantErr: "b: boom",
			wantIs:  boom,
		},
		{
			name: "panic becomes an error",
			parts: func(chan struct{}) []part {
				return []part{{"a", waitCtx}, {"p", func(context.Context) error { panic("kaput") }}}
			},
			wantErr: "p: panic: kaput",
		},
		{
			name: "early nil return does not stop the group",
			parts: func(chan struct{}) []part {
				return []part{{"a", waitCtx}, {"done", func(context.Context) error { return nil }}}
			},
			cancel: true,
		},
		{
			name: "stuck part is abandoned after grace",
			parts: func(block chan struct{}) []part {
				return []part{{"a", waitCtx}, {"stuck", func(context.Context) error { <-block; return nil }}}
			},
			cancel:  true,
			wantErr: "stuck still running",
			wantIs:  errShutdownTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block := make(chan struct{})
			defer close(block)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			err := runGroup(ctx, 50*time.Millisecond, tt.parts(block))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("runGroup = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("runGroup = %v, want error containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("runGroup = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}
