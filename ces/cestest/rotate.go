package cestest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Rotate makes a new generation and returns its number. change is "all"
// (schema passwords and wallet), "credentials" (schema passwords only) or
// "wallet" (new leaf certificate, stores and wallet password only); anything
// else panics. Then, unless OpCallback has a LoseCallbacks fault, it POSTs
// {"usecase":"credentialRotation","change":change} to every registered http(s)
// endpoint, one after another, and returns once all have answered or timed out.
func (s *Server) Rotate(change string) int {
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()

	old := s.current()
	g, err := s.b.next(old, change)
	if err != nil {
		panic(fmt.Sprintf("cestest: Rotate: %v", err))
	}
	s.mu.Lock()
	s.cur = g
	f := s.takeFaultLocked(OpCallback)
	var targets []string
	for _, ep := range s.endpoints {
		if isHTTP(ep) {
			targets = append(targets, ep)
		}
	}
	s.mu.Unlock()

	if f.Kind == LoseCallbacks {
		return g.Number
	}
	body, _ := json.Marshal(map[string]string{"usecase": "credentialRotation", "change": change})
	for _, ep := range targets {
		s.mu.Lock()
		s.calls[OpCallback]++
		s.mu.Unlock()
		ok := s.callback(ep, body, f)
		s.recordCallback(ep, ok)
	}
	return g.Number
}

func isHTTP(ep string) bool {
	u, err := url.Parse(ep)
	if err != nil {
		return false
	}
	scheme := strings.ToLower(u.Scheme)
	return scheme == "http" || scheme == "https"
}

// callback POSTs body to ep and reports whether it answered 2xx.
func (s *Server) callback(ep string, body []byte, f Fault) bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.CallbackTimeout)
	defer cancel()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cbClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

func (s *Server) recordCallback(ep string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if indexOf(s.endpoints, ep) < 0 {
		return // unregistered meanwhile
	}
	if ok {
		delete(s.failures, ep)
		return
	}
	s.failures[ep]++
	if n := s.opts.DropAfterFailures; n > 0 && s.failures[ep] >= n {
		s.dropLocked(ep)
	}
}

// Endpoints returns the registered endpoints in registration order.
func (s *Server) Endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string{}, s.endpoints...)
}

// DropEndpoint removes ep as CES does with endpoints it gave up on.
func (s *Server) DropEndpoint(ep string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(ep)
}

func (s *Server) dropLocked(ep string) {
	if i := indexOf(s.endpoints, ep); i >= 0 {
		s.endpoints = append(s.endpoints[:i], s.endpoints[i+1:]...)
	}
	delete(s.failures, ep)
}

// Failures reports ep's consecutive failed callbacks.
func (s *Server) Failures(ep string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures[ep]
}
