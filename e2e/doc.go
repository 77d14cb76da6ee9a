// Package e2e holds Latch's end-to-end tests: the real latch-coordinator,
// latchd and latch binaries on hosts made of network namespaces (see
// e2e/netns), with real TUN devices and WireGuard between them.
//
// The tests need root and iproute2, wireguard-tools, tcpdump and
// iputils-ping (scripts/install-deps installs them); without root they
// skip. TestMain builds the binaries once, or uses $LATCH_BIN_DIR when set
// (make test sets it). `go test -short` skips them.
//
// With no policy saved nodes see no peers, so every test that needs
// traffic saves one first: cluster.MeshPolicy for tests of the data plane,
// or the web/api/db/ci policy of the policy tests.
//
// Measurements are logged as lines starting with "METRIC name=value", so
// `go test -v ./e2e | grep METRIC` collects them.
package e2e
