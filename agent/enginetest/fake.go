// Package enginetest is an in-memory agent.Engine for tests: it records
// every configuration pushed to it and reports whatever status the test
// sets.
package enginetest

import (
	"errors"
	"slices"
	"sync"

	"github.com/latchnet/latch/agent"
	"github.com/latchnet/latch/overlay"
)

// Factory creates Fakes and remembers them, in order. Its New method is an
// agent.Config.NewEngine.
type Factory struct {
	mu      sync.Mutex
	engines []*Fake
	// err, when set, fails the next New calls.
	err error
}

// New creates a Fake engine.
func (f *Factory) New(opts agent.EngineOptions) (agent.Engine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	e := &Fake{Options: opts}
	f.engines = append(f.engines, e)
	return e, nil
}

// FailNew makes New fail with err (nil to succeed again).
func (f *Factory) FailNew(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Engines returns every engine created so far.
func (f *Factory) Engines() []*Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.engines)
}

// Last returns the newest engine, or nil.
func (f *Factory) Last() *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.engines) == 0 {
		return nil
	}
	return f.engines[len(f.engines)-1]
}

// ErrClosed is returned by a closed Fake.
var ErrClosed = errors.New("fake engine closed")

// Fake is an in-memory engine.
type Fake struct {
	// Options are what the engine was created with.
	Options agent.EngineOptions

	mu        sync.Mutex
	configs   []overlay.Config
	status    agent.EngineStatus
	closed    bool
	reconfErr error
}

// Reconfig records cfg.
func (e *Fake) Reconfig(cfg overlay.Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.reconfErr != nil {
		return e.reconfErr
	}
	e.configs = append(e.configs, cfg)
	return nil
}

// Status returns what SetStatus set.
func (e *Fake) Status() (agent.EngineStatus, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return agent.EngineStatus{}, ErrClosed
	}
	return e.status, nil
}

// Close marks the engine closed.
func (e *Fake) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.closed = true
	return nil
}

// SetStatus sets what Status reports.
func (e *Fake) SetStatus(s agent.EngineStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = s
}

// FailReconfig makes Reconfig fail with err (nil to succeed again).
func (e *Fake) FailReconfig(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reconfErr = err
}

// Configs returns every configuration applied, in order.
func (e *Fake) Configs() []overlay.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.configs)
}

// Closed reports whether Close was called.
func (e *Fake) Closed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}
