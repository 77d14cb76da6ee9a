package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Program names of the Latch binaries, as built from cmd/<name>.
const (
	CoordinatorBin = "latch-coordinator"
	AgentBin       = "latchd"
	CLIBin         = "latch"
)

// Programs lists every binary a cluster needs.
var Programs = []string{CoordinatorBin, AgentBin, CLIBin}

// Binaries locates the Latch programs in one directory.
type Binaries struct {
	Dir string
	// Missing holds, per program that is not usable, why (build error or
	// absence).
	Missing map[string]error
}

// Path returns the path of a program in Dir.
func (b Binaries) Path(prog string) string { return filepath.Join(b.Dir, prog) }

// Require returns an error naming every listed program that is missing
// and why; with no arguments it checks all of Programs.
func (b Binaries) Require(progs ...string) error {
	if len(progs) == 0 {
		progs = Programs
	}
	var errs []error
	for _, p := range progs {
		if err := b.Missing[p]; err != nil {
			errs = append(errs, fmt.Errorf("%s unavailable: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// FindBinaries checks which of Programs exist as executables in dir.
func FindBinaries(dir string) Binaries {
	b := Binaries{Dir: dir, Missing: map[string]error{}}
	for _, p := range Programs {
		st, err := os.Stat(b.Path(p))
		switch {
		case err != nil:
			b.Missing[p] = fmt.Errorf("not in %s (run make build): %w", dir, err)
		case st.IsDir() || st.Mode()&0o111 == 0:
			b.Missing[p] = fmt.Errorf("%s is not an executable", b.Path(p))
		}
	}
	return b
}

// Build builds every program of Programs from the module at moduleDir into
// outDir, one by one, so that a program that does not compile yet does not
// hide the ones that do.
func Build(ctx context.Context, moduleDir, outDir string) Binaries {
	b := Binaries{Dir: outDir, Missing: map[string]error{}}
	for _, p := range Programs {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(outDir, p), "./cmd/"+p)
		cmd.Dir = moduleDir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Missing[p] = fmt.Errorf("go build ./cmd/%s: %v\n%s", p, err, strings.TrimSpace(string(out)))
		}
	}
	return b
}

// ModuleDir returns the root of the module containing the working
// directory.
func ModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding module root: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("finding module root: not inside a module")
	}
	return filepath.Dir(gomod), nil
}
