// Package grants ends just-in-time access grants when they expire.
//
// Agents enforce a grant's expiry on their own clock whatever the
// coordinator does; the Expirer makes the coordinator agree: at the
// earliest expiry among active grants it marks the due grants expired in
// the store (which bumps the netmap version) and tells the netmap hub, so
// the grants leave every netmap.
package grants

import (
	"context"
	"log/slog"
	"time"

	"github.com/latchnet/latch/coordinator/clock"
	"github.com/latchnet/latch/coordinator/expiry"
	"github.com/latchnet/latch/coordinator/store"
)

// Config configures an Expirer.
type Config struct {
	Store store.Store
	// Notify is called after grants expired (the netmap changed).
	Notify func()
	// Clock defaults to the real clock.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Expirer expires grants at their Expires: Kick after approving one,
// Close to stop it.
type Expirer = expiry.Sweeper

// Start starts an Expirer. Grants already past their expiry are expired
// at once.
func Start(cfg Config) *Expirer {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return expiry.StartTask(expiry.Task{
		What: "access grants",
		Expire: func(ctx context.Context, now time.Time) (bool, error) {
			expired, err := cfg.Store.ExpireGrants(ctx, now)
			for _, g := range expired {
				log.Info("access grant expired", "grant", g.ID, "node", g.Src, "to", g.To, "expires", g.Expires)
			}
			return len(expired) > 0, err
		},
		Next: cfg.Store.NextGrantExpiry,
	}, cfg.Notify, cfg.Clock, log)
}
