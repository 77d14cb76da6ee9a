package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// FilePendingWGKey holds a WireGuard key generated for a rotation that the
// coordinator has not confirmed yet. It is written before the coordinator
// is asked, so a crash at any point never loses a key the coordinator may
// already know: the agent asks again with it on start.
const FilePendingWGKey = "wireguard.key.pending"

// SavePendingWGKey records k as the key of a rotation in progress.
func (d *Dir) SavePendingWGKey(k wgtypes.Key) error {
	if err := d.writeAtomic(FilePendingWGKey, []byte(k.String()+"\n")); err != nil {
		return fmt.Errorf("saving pending WireGuard key: %w", err)
	}
	return nil
}

// LoadPendingWGKey returns the key of a rotation in progress and whether
// there is one.
func (d *Dir) LoadPendingWGKey() (wgtypes.Key, bool, error) {
	b, err := d.readFile(FilePendingWGKey)
	if errors.Is(err, fs.ErrNotExist) {
		return wgtypes.Key{}, false, nil
	}
	if err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("loading pending WireGuard key: %w", unwrapPath(err))
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		// wgtypes errors never echo the key.
		return wgtypes.Key{}, false, d.corrupt(FilePendingWGKey, errors.New("not a base64 WireGuard key"))
	}
	return k, true, nil
}

// DropPendingWGKey forgets a rotation the coordinator refused.
func (d *Dir) DropPendingWGKey() error {
	if err := d.remove(FilePendingWGKey); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dropping pending WireGuard key: %w", err)
	}
	return d.syncDirectory()
}

// CommitWGKey makes k, confirmed by the coordinator, the node's WireGuard
// key: the key file, then the identity, then the pending file goes. A
// crash between the steps is finished by FinishRotation.
func (d *Dir) CommitWGKey(k wgtypes.Key) error {
	if err := d.writeAtomic(FileWGKey, []byte(k.String()+"\n")); err != nil {
		return fmt.Errorf("committing WireGuard key: %w", err)
	}
	return d.finishCommit(k)
}

// FinishRotation completes a commit a crash interrupted: if the key file
// already holds the pending key, the coordinator had confirmed it, so the
// identity is updated and the pending file removed. A pending key not yet
// in the key file is left for the agent to confirm with the coordinator.
// Call it before Load.
func (d *Dir) FinishRotation() error {
	pending, ok, err := d.LoadPendingWGKey()
	if err != nil || !ok {
		return err
	}
	cur, err := d.loadWGKey()
	if err != nil {
		return err
	}
	if cur != pending {
		return nil
	}
	return d.finishCommit(pending)
}

// finishCommit records k's public half in the identity and removes the
// pending file. The key file already holds k.
func (d *Dir) finishCommit(k wgtypes.Key) error {
	b, err := d.readFile(FileIdentity)
	if err != nil {
		return fmt.Errorf("committing WireGuard key: %w", unwrapPath(err))
	}
	var id Identity
	if err := decodeStrict(b, &id); err != nil {
		return d.corrupt(FileIdentity, err)
	}
	id.WireGuardKey = wire.NodePublic(k.PublicKey())
	js, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("committing WireGuard key: %w", err)
	}
	if err := d.writeAtomic(FileIdentity, append(js, '\n')); err != nil {
		return fmt.Errorf("committing WireGuard key: %w", err)
	}
	return d.DropPendingWGKey()
}

// WGKeyTime returns when the current WireGuard key was written: the
// enrollment or the last rotation.
func (d *Dir) WGKeyTime() (time.Time, error) {
	t, err := d.modTime(FileWGKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading WireGuard key time: %w", unwrapPath(err))
	}
	return t, nil
}
