package overlay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"
)

// The kernel tests run one Engine per network namespace. Every socket,
// interface and netlink call of an Engine must happen inside its namespace,
// including those made later from wireguard-go's own goroutines, so each
// Engine lives in a helper process started with `ip netns exec`: this test
// binary, re-run with helperEnv set. The helper reads one JSON helperReq
// per line on stdin and answers each with one helperResp line on stdout;
// its logs go to stderr, which a failed test shows (any test, with
// LATCH_TEST_HELPER_LOGS set; with it set to "debug", wireguard-go's
// handshake messages included).
const helperEnv = "LATCH_OVERLAY_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type helperReq struct {
	Op string `json:"op"`
	// new
	Iface       string     `json:"iface,omitempty"`
	UnderlayDst netip.Addr `json:"underlay_dst,omitzero"`
	// reconfig
	Config *Config `json:"config,omitempty"`
	// listen, dial
	Addr  string `json:"addr,omitempty"`
	Bytes int    `json:"bytes,omitempty"`
}

type helperResp struct {
	Err         string            `json:"err,omitempty"`
	UnderlayMTU int               `json:"underlay_mtu,omitempty"`
	MTU         int               `json:"mtu,omitempty"`
	Status      *Status           `json:"status,omitempty"`
	Counts      map[string]uint64 `json:"counts,omitempty"`
	Leaked      string            `json:"leaked,omitempty"`
}

func runHelper(in io.Reader, out io.Writer) int {
	level := slog.LevelInfo
	if os.Getenv("LATCH_TEST_HELPER_LOGS") == "debug" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var (
		e         *Engine
		baseline  int
		listeners []net.Listener
	)
	enc := json.NewEncoder(out)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var req helperReq
		var resp helperResp
		err := json.Unmarshal(sc.Bytes(), &req)
		if err == nil {
			switch req.Op {
			case "new":
				baseline = runtime.NumGoroutine()
				resp.UnderlayMTU, err = UnderlayMTU(req.UnderlayDst)
				if err == nil {
					resp.MTU = OverlayMTU(resp.UnderlayMTU, req.UnderlayDst.Is6())
					e, err = New(Options{Interface: req.Iface, MTU: resp.MTU, Logger: log})
				}
			case "underlay-mtu":
				resp.UnderlayMTU, err = UnderlayMTU(req.UnderlayDst)
			case "reconfig":
				err = e.Reconfig(*req.Config)
			case "status":
				resp.Status, err = e.Status()
			case "counts":
				resp.Counts = map[string]uint64{}
				for r, n := range e.FilterCounts() {
					resp.Counts[r.String()] = n
				}
			case "listen":
				var l net.Listener
				l, err = net.Listen("tcp", req.Addr)
				if err == nil {
					listeners = append(listeners, l)
					go echoServer(l)
				}
			case "dial":
				err = echoClient(req.Addr, req.Bytes)
			case "close":
				for _, l := range listeners {
					l.Close()
				}
				err = e.Close()
				resp.Leaked = waitGoroutines(baseline, 10*time.Second)
			case "exit":
				return 0
			default:
				err = fmt.Errorf("unknown op %q", req.Op)
			}
		}
		if err != nil {
			resp.Err = err.Error()
		}
		if err := enc.Encode(resp); err != nil {
			return 1
		}
	}
	return 0
}

func echoServer(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// echoClient sends n bytes to an echo server at addr and checks that the
// same bytes come back.
func echoClient(addr string, n int) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	sent := make([]byte, n)
	for i := range sent {
		sent[i] = byte(i*7 + i/251)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(sent)
		werr <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("reading echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if !bytes.Equal(sent, got) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

// waitGoroutines waits until no more goroutines run than baseline and
// returns "" or, after timeout, a dump of all goroutines.
func waitGoroutines(baseline int, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if runtime.NumGoroutine() <= baseline {
			return ""
		}
		runtime.Gosched()
		time.Sleep(20 * time.Millisecond) // polling interval, not a wait for an event
	}
	buf := make([]byte, 1<<20)
	return fmt.Sprintf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
}
