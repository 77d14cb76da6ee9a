package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"
)

// MemoryPath is the Path of a Dir opened with OpenMemory.
const MemoryPath = "(memory)"

// memFiles holds the files of an in-memory Dir. Its contents die with the
// process: nothing is ever written to disk.
type memFiles struct {
	mu    sync.Mutex         // guards files
	files map[string]memFile // by file name
}

type memFile struct {
	data []byte
	mod  time.Time
}

// OpenMemory returns a Dir that keeps every file (identity, keys,
// certificates, the netmap cache, prefs) in memory only, for nodes that
// must leave nothing on disk (containers, CI runners). It starts empty:
// such a node enrolls afresh at every start.
func OpenMemory() *Dir {
	return &Dir{path: MemoryPath, mem: &memFiles{files: map[string]memFile{}}}
}

// InMemory reports whether d keeps its files in memory only.
func (d *Dir) InMemory() bool { return d.mem != nil }

// readFile returns the content of name; a missing file is an error
// wrapping fs.ErrNotExist.
func (d *Dir) readFile(name string) ([]byte, error) {
	if d.mem == nil {
		return os.ReadFile(d.file(name))
	}
	d.mem.mu.Lock()
	defer d.mem.mu.Unlock()
	f, ok := d.mem.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(f.data), nil
}

// writeMem stores name in memory (see writeAtomic).
func (d *Dir) writeMem(name string, data []byte) {
	d.mem.mu.Lock()
	defer d.mem.mu.Unlock()
	d.mem.files[name] = memFile{data: slices.Clone(data), mod: time.Now()}
}

// remove deletes name; a missing file is an error wrapping fs.ErrNotExist.
func (d *Dir) remove(name string) error {
	if d.mem == nil {
		return os.Remove(d.file(name))
	}
	d.mem.mu.Lock()
	defer d.mem.mu.Unlock()
	if _, ok := d.mem.files[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.mem.files, name)
	return nil
}

// modTime returns when name was last written.
func (d *Dir) modTime(name string) (time.Time, error) {
	if d.mem == nil {
		fi, err := os.Stat(d.file(name))
		if err != nil {
			return time.Time{}, err
		}
		return fi.ModTime(), nil
	}
	d.mem.mu.Lock()
	defer d.mem.mu.Unlock()
	f, ok := d.mem.files[name]
	if !ok {
		return time.Time{}, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return f.mod, nil
}

// syncDirectory makes removals durable; nothing to do in memory.
func (d *Dir) syncDirectory() error {
	if d.mem != nil {
		return nil
	}
	return syncDir(d.path)
}

// Forget removes the node's identity, keys, certificates, cached netmap
// and prefs, as after an ephemeral node left the network: the next start
// finds no identity and waits for `latch up`. The identity goes first, so
// a crash midway leaves no identity rather than a half one.
func (d *Dir) Forget() error {
	var errs []error
	for _, name := range []string{FileIdentity, FileWGKey, FilePendingWGKey, FileCertKey, FileCert, FileCA, FileNetmap, FilePrefs} {
		if err := d.remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("forgetting identity: %s: %w", name, unwrapPath(err)))
		}
	}
	if err := d.syncDirectory(); err != nil {
		errs = append(errs, fmt.Errorf("forgetting identity: %w", err))
	}
	return errors.Join(errs...)
}
