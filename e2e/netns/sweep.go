package netns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// leftover matches the names this harness gives namespaces and work
// directories; the group is the PID of the run that made them.
var leftover = regexp.MustCompile(`^` + regexp.QuoteMeta(Prefix) + `([0-9]+)-[0-9a-f]+(-[a-z0-9]+)?$`)

// Sweep removes what earlier runs of the harness left behind when they were
// killed before their cleanups ran: processes inside their namespaces, the
// namespaces, the UAPI sockets they recorded and their work directories. It
// touches only names matching latch-e2e-<pid>-... whose <pid> is no longer
// a live process, never anything else. It returns what it removed.
func Sweep() ([]string, error) {
	var removed []string
	var errs []error
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	for _, e := range entries {
		if !isDead(e.Name()) {
			continue
		}
		for _, pid := range nsPIDs(e.Name()) {
			// A process inside one of our dead run's namespaces was
			// started by that run.
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if err := deleteNamespace(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "netns "+e.Name())
	}
	dirs, err := os.ReadDir(os.TempDir())
	if err != nil {
		return removed, fmt.Errorf("listing %s: %w", os.TempDir(), err)
	}
	for _, d := range dirs {
		if !d.IsDir() || !isDead(d.Name()) {
			continue
		}
		dir := filepath.Join(os.TempDir(), d.Name())
		for _, name := range recordedIfaces(dir) {
			if err := os.Remove(uapiSocket(name)); err == nil {
				removed = append(removed, "socket "+uapiSocket(name))
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "dir "+dir)
	}
	return removed, errors.Join(errs...)
}

// isDead reports whether name is one of ours and its run's PID is gone.
func isDead(name string) bool {
	m := leftover.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	err = syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}

// nsPIDs lists the processes inside a named namespace.
func nsPIDs(ns string) []int {
	out, err := runIP("netns", "pids", ns)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// recordedIfaces reads the interface names a run wrote to dir/ifaces.
func recordedIfaces(dir string) []string {
	f, err := os.Open(filepath.Join(dir, "ifaces"))
	if err != nil {
		return nil
	}
	defer f.Close()
	valid := regexp.MustCompile(`^lt[0-9a-f]{6}$`)
	var names []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name := strings.TrimSpace(s.Text()); valid.MatchString(name) {
			names = append(names, name)
		}
	}
	return names
}
