// Package netns builds throwaway multi-host networks out of Linux network
// namespaces, for Latch's end-to-end tests and benchmarks.
//
// A Network is one "internet" namespace holding a bridge; every Host is a
// namespace whose eth0 is a veth into that bridge, with an underlay address
// in 198.18.0.0/24 and link MTU 1400. Commands run inside a host with
// `ip netns exec`; the test process itself can open sockets inside a host
// (Host.Do, Host.DialContext, Host.Listen) by switching one locked OS thread
// into the host's namespace.
//
// Everything is named latch-e2e-<pid>-<rand>-<host> and is torn down through
// the TB's Cleanup in reverse order of creation, also when a test fails or
// panics: processes first (SIGTERM, then SIGKILL after a deadline), then the
// UAPI sockets of the WireGuard interfaces the hosts used, then the
// namespaces, then the work directory. Sweep removes what a killed run left
// behind, and only that: namespaces and work directories named after a
// process ID that is no longer alive.
//
// The harness needs root and iproute2; Check says whether they are there.
// Outside tests, a Session stands in for testing.T.
package netns
