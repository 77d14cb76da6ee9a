package netns

import (
	"errors"
	"fmt"
	"time"
)

// Eventually calls f until it returns nil, and fails t with f's last error
// if that does not happen within deadline. It polls quickly at first and
// backs off to at most four times a second. An error wrapped with
// Permanent fails at once.
func Eventually(t TB, deadline time.Duration, f func() error) {
	t.Helper()
	if err := Poll(deadline, f); err != nil {
		t.Fatalf("%v", err)
	}
}

// Poll calls f until it returns nil or deadline passes; then it returns
// f's last error, saying how long it waited. It returns a Permanent error
// at once.
func Poll(deadline time.Duration, f func() error) error {
	start := time.Now()
	wait := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		if time.Since(start) > deadline {
			return fmt.Errorf("still failing after %v: %w", deadline, err)
		}
		timer := time.NewTimer(wait)
		<-timer.C
		if wait < 250*time.Millisecond {
			wait *= 2
		}
	}
}

// Permanent marks an error that no amount of polling will cure.
func Permanent(err error) error { return permanent{err} }

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }
