package overlay

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/latchnet/latch/acl/filter"
	"github.com/latchnet/latch/wire"
)

// wireguard-go's offsets: it reads with room for its own header in front,
// and writes decrypted packets from behind the transport header.
const (
	readOffset  = 16
	writeOffset = 16
)

func newTestFilterTUN(t *testing.T) (*filterTUN, *fakeTUN) {
	t.Helper()
	f := filter.New(filter.Options{})
	err := f.SetRules([]wire.FilterRule{{
		ID:        "allow-peer",
		Sources:   []netip.Prefix{pfx("100.64.0.2/32")},
		Protocols: []wire.Proto{wire.ProtoUDP},
		Ports:     []wire.PortRange{{First: 53, Last: 53}},
	}}, []netip.Prefix{pfx("100.64.0.1/32")})
	if err != nil {
		t.Fatal(err)
	}
	native := newFakeTUN()
	return newFilterTUN(native, f, nil), native
}

// batch returns wireguard-go-style buffers holding pkts at offset.
func batch(offset int, pkts ...[]byte) [][]byte {
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = make([]byte, offset+len(p), offset+2048)
		copy(bufs[i][offset:], p)
	}
	return bufs
}

func TestFilterTUNDelegatesBatchingAndDeviceCalls(t *testing.T) {
	ft, native := newTestFilterTUN(t)
	if got, want := ft.BatchSize(), native.BatchSize(); got != want {
		t.Errorf("BatchSize %d, native %d", got, want)
	}
	if mtu, _ := ft.MTU(); mtu != 1340 {
		t.Errorf("MTU %d", mtu)
	}
	if ft.Events() != native.Events() {
		t.Error("Events channel not the native one")
	}
}

func TestFilterTUNReadDropsBySizeZeroInOrder(t *testing.T) {
	ft, native := newTestFilterTUN(t)
	good1 := udpPacket("100.64.0.1", "100.64.0.2", 5000, 53)
	bad := good1[:25] // truncated UDP header
	good2 := tcpPacket("100.64.0.1", "100.64.0.3", 40000, 443, 0x02)
	native.toRead = [][]byte{good1, bad, good2}
	bufs := batch(readOffset, make([]byte, 2000), make([]byte, 2000), make([]byte, 2000), make([]byte, 2000))
	sizes := make([]int, len(bufs))
	n, err := ft.Read(bufs, sizes, readOffset)
	if err != nil || n != 3 {
		t.Fatalf("Read = %d, %v; want 3 packets", n, err)
	}
	if diff := cmp.Diff([]int{len(good1), 0, len(good2), 0}, sizes); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if got := bufs[2][readOffset : readOffset+sizes[2]]; !cmp.Equal(got, good2) {
		t.Error("packets moved between buffers")
	}
	// The accepted outbound UDP opened a flow: the reply gets in.
	if _, r := ft.filter.RunIn(udpPacket("100.64.0.2", "100.64.0.1", 53, 5000)); r != filter.AcceptEstablished {
		t.Errorf("reply to an outbound read: %v", r)
	}
}

func TestFilterTUNWritePassesAdmittedPacketsInOrder(t *testing.T) {
	ft, native := newTestFilterTUN(t)
	allowed1 := udpPacket("100.64.0.2", "100.64.0.1", 1000, 53)
	denied := udpPacket("100.64.0.9", "100.64.0.1", 1000, 53)
	allowed2 := udpPacket("100.64.0.2", "100.64.0.1", 1001, 53)
	bufs := batch(writeOffset, allowed1, denied, allowed2, denied)
	orig := append([][]byte(nil), bufs...)
	if _, err := ft.Write(bufs, writeOffset); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][][]byte{{allowed1, allowed2}}, native.written); diff != "" {
		t.Errorf("native writes (-want +got):\n%s", diff)
	}
	for i := range bufs {
		if &bufs[i][0] != &orig[i][0] || len(bufs[i]) != len(orig[i]) {
			t.Errorf("caller's bufs[%d] modified", i)
		}
	}
	if got := ft.filter.Count(filter.DropNoRule); got != 2 {
		t.Errorf("drop-no-rule count %d, want 2", got)
	}
}

func TestFilterTUNWriteAllAdmittedHandsOverTheSameBatch(t *testing.T) {
	ft, native := newTestFilterTUN(t)
	bufs := batch(writeOffset, udpPacket("100.64.0.2", "100.64.0.1", 1000, 53), udpPacket("100.64.0.2", "100.64.0.1", 1001, 53))
	if _, err := ft.Write(bufs, writeOffset); err != nil {
		t.Fatal(err)
	}
	if len(native.gotBufs) != 1 || &native.gotBufs[0][0] != &bufs[0] {
		t.Error("an all-admitted batch was copied instead of passed through")
	}
}

func TestFilterTUNWriteAllDroppedWritesNothing(t *testing.T) {
	ft, native := newTestFilterTUN(t)
	bufs := batch(writeOffset, udpPacket("100.64.0.9", "100.64.0.1", 1000, 53))
	if _, err := ft.Write(bufs, writeOffset); err != nil {
		t.Fatal(err)
	}
	if len(native.written) != 0 {
		t.Errorf("native got %d writes, want none", len(native.written))
	}
}

// TestFilterTUNWriteFromManyPeers writes from several goroutines at once, as
// wireguard-go's per-peer receivers do; run with -race.
func TestFilterTUNWriteFromManyPeers(t *testing.T) {
	ft, native := newTestFilterTUN(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				bufs := batch(writeOffset,
					udpPacket("100.64.0.2", "100.64.0.1", uint16(1000+g), 53),
					udpPacket("100.64.0.9", "100.64.0.1", uint16(i), 53),
					udpPacket("100.64.0.2", "100.64.0.1", uint16(2000+g), 53))
				if _, err := ft.Write(bufs, writeOffset); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(native.written) != 800 {
		t.Fatalf("%d native writes, want 800", len(native.written))
	}
	for _, w := range native.written {
		if len(w) != 2 {
			t.Fatalf("a write carried %d packets, want 2", len(w))
		}
	}
}

func TestFilterTUNDoesNotAllocate(t *testing.T) {
	f := filter.New(filter.Options{})
	if err := f.SetRules([]wire.FilterRule{{ID: "a", Sources: []netip.Prefix{pfx("100.64.0.2/32")}, Protocols: []wire.Proto{wire.ProtoUDP}, Ports: []wire.PortRange{{First: 53, Last: 53}}}}, []netip.Prefix{pfx("100.64.0.1/32")}); err != nil {
		t.Fatal(err)
	}
	ft := newFilterTUN(&nopTUN{}, f, nil)
	mixed := batch(writeOffset, udpPacket("100.64.0.2", "100.64.0.1", 1, 53), udpPacket("100.64.0.9", "100.64.0.1", 1, 53), udpPacket("100.64.0.2", "100.64.0.1", 2, 53))
	clean := batch(writeOffset, udpPacket("100.64.0.2", "100.64.0.1", 1, 53), udpPacket("100.64.0.2", "100.64.0.1", 2, 53))
	reads := batch(readOffset, make([]byte, 1500), make([]byte, 1500))
	sizes := make([]int, 2)
	for name, fn := range map[string]func(){
		"write with drops": func() { ft.Write(mixed, writeOffset) },
		"write clean":      func() { ft.Write(clean, writeOffset) },
		"read":             func() { ft.Read(reads, sizes, readOffset) },
	} {
		if n := testing.AllocsPerRun(200, fn); n != 0 {
			t.Errorf("%s: %v allocations per batch, want 0", name, n)
		}
	}
}

// nopTUN is a native device that reads two outbound UDP packets and
// discards writes, without allocating.
type nopTUN struct{ *fakeTUN }

var nopPacket = udpPacket("100.64.0.1", "100.64.0.2", 5000, 53)

func (nopTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for i := range 2 {
		sizes[i] = copy(bufs[i][offset:], nopPacket)
	}
	return 2, nil
}

func (nopTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (nopTUN) BatchSize() int                               { return 128 }
