package netns

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// TB is the part of testing.TB the harness uses. *testing.T and
// *testing.B satisfy it; Session does outside tests.
type TB interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
}

// Session is a TB for programs that are not tests, such as benchmarks: a
// stack of cleanups run by Close in reverse order. Fatalf runs them and
// exits the program with status 1.
type Session struct {
	out io.Writer

	// closing is held for the whole of Close, so a second Close (say, from
	// a signal handler) returns only once every cleanup has finished.
	closing sync.Mutex

	mu       sync.Mutex // guards the fields below
	cleanups []func()
	failed   bool
}

// NewSession returns a Session that logs to out.
func NewSession(out io.Writer) *Session { return &Session{out: out} }

// Helper does nothing; it exists to satisfy TB.
func (s *Session) Helper() {}

// Cleanup registers f to run at Close, after every function registered
// later than it.
func (s *Session) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// Logf prints a line to the session's output.
func (s *Session) Logf(format string, args ...any) {
	fmt.Fprintf(s.out, format+"\n", args...)
}

// Errorf logs and marks the session failed.
func (s *Session) Errorf(format string, args ...any) {
	s.mu.Lock()
	s.failed = true
	s.mu.Unlock()
	s.Logf("error: "+format, args...)
}

// Fatalf logs, runs every cleanup and exits with status 1.
func (s *Session) Fatalf(format string, args ...any) {
	s.Errorf(format, args...)
	s.Close()
	os.Exit(1)
}

// Failed reports whether Errorf or Fatalf was called.
func (s *Session) Failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Close runs the registered cleanups, last registered first. Each runs at
// most once, so Close may be called again (say, from a signal handler).
func (s *Session) Close() {
	s.closing.Lock()
	defer s.closing.Unlock()
	for {
		s.mu.Lock()
		n := len(s.cleanups)
		if n == 0 {
			s.mu.Unlock()
			return
		}
		f := s.cleanups[n-1]
		s.cleanups = s.cleanups[:n-1]
		s.mu.Unlock()
		f()
	}
}
