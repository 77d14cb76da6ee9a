package control

import (
	"context"
	"net"
)

// DialFunc connects to a network address, like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

type dialKey struct{}

// WithDial returns a context whose coordinator calls through this package
// (Enroll, and a Client's calls and streams made with it) connect with
// dial instead of the system dialer: for tools and tests that reach a
// coordinator from another network namespace. Production agents never
// need it.
func WithDial(ctx context.Context, dial DialFunc) context.Context {
	return context.WithValue(ctx, dialKey{}, dial)
}

// contextDial is every transport's DialContext: the context's DialFunc if
// WithDial set one, else the system dialer.
func contextDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d, ok := ctx.Value(dialKey{}).(DialFunc); ok && d != nil {
		return d(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
