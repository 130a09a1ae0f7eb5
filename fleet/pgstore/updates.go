package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// PutModel implements fleet.UpdateStore.
func (s *Store) PutModel(ctx context.Context, m fleet.Model, pkg []byte) error {
	if m.Name == "" || m.Version == "" || m.SHA256 == "" || strings.Contains(m.Name, "@") {
		return fmt.Errorf("put model %s@%s: name, version and sha256 are required", m.Name, m.Version)
	}
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode model %s@%s: %w", m.Name, m.Version, err)
	}
	if pkg == nil {
		pkg = []byte{}
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO packages (sha256, data) VALUES ($1, $2)
			ON CONFLICT (sha256) DO UPDATE SET data = excluded.data`, m.SHA256, pkg); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO models (name, version, release, record) VALUES ($1, $2, $3, $4::json)
			ON CONFLICT (name, version) DO UPDATE SET release = excluded.release, record = excluded.record`,
			m.Name, m.Version, int64(m.Release), string(v))
		return err
	})
	if err != nil {
		return fmt.Errorf("put model %s@%s: %w", m.Name, m.Version, err)
	}
	return nil
}

// Models implements fleet.UpdateStore.
func (s *Store) Models(ctx context.Context) ([]fleet.Model, error) {
	// Release is a uint64 stored bit for bit: order as unsigned.
	out, err := queryJSON[fleet.Model](ctx, s.pool, "SELECT record FROM models ORDER BY name, release # (-9223372036854775808)::bigint, version")
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// Model implements fleet.UpdateStore.
func (s *Store) Model(ctx context.Context, name, version string) (fleet.Model, error) {
	out, err := queryJSON[fleet.Model](ctx, s.pool, "SELECT record FROM models WHERE name = $1 AND version = $2", name, version)
	if err == nil && len(out) == 0 {
		err = fleet.ErrNotFound
	}
	if err != nil {
		return fleet.Model{}, fmt.Errorf("model %s@%s: %w", name, version, err)
	}
	return out[0], nil
}

// Package implements fleet.UpdateStore.
func (s *Store) Package(ctx context.Context, sha string) ([]byte, error) {
	var out []byte
	err := s.pool.QueryRow(ctx, "SELECT data FROM packages WHERE sha256 = $1", sha).Scan(&out)
	if errors.Is(err, pgx.ErrNoRows) {
		err = fleet.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", sha, err)
	}
	return out, nil
}

// PutRollout implements fleet.UpdateStore.
func (s *Store) PutRollout(ctx context.Context, r fleet.Rollout, desired []fleet.DeviceDesired) error {
	if r.ID == "" {
		return fmt.Errorf("put rollout: empty id")
	}
	for _, d := range desired {
		if err := wire.ValidDeviceID(d.Device); err != nil {
			return fmt.Errorf("put rollout %s: %w", r.ID, err)
		}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rollout %s: %w", r.ID, err)
	}
	devs := make([]string, len(desired))
	recs := make([]string, len(desired))
	for i, d := range desired {
		dv, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode desired state of %s: %w", d.Device, err)
		}
		devs[i], recs[i] = d.Device, string(dv)
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO rollouts (id, created_ns, record) VALUES ($1, $2, $3::json)
			ON CONFLICT (id) DO UPDATE SET created_ns = excluded.created_ns, record = excluded.record`,
			r.ID, nanos(r.Created), string(v)); err != nil {
			return err
		}
		if len(desired) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO desired (device, record)
			SELECT DISTINCT ON (d) d, rec::json FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(d, rec, n)
			ORDER BY d, n DESC
			ON CONFLICT (device) DO UPDATE SET record = excluded.record`, devs, recs)
		return err
	})
	if err != nil {
		return fmt.Errorf("put rollout %s: %w", r.ID, err)
	}
	return nil
}

// Rollouts implements fleet.UpdateStore.
func (s *Store) Rollouts(ctx context.Context) ([]fleet.Rollout, error) {
	out, err := queryJSON[fleet.Rollout](ctx, s.pool, "SELECT record FROM rollouts ORDER BY created_ns, id")
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	return out, nil
}

// Rollout implements fleet.UpdateStore.
func (s *Store) Rollout(ctx context.Context, id string) (fleet.Rollout, error) {
	out, err := queryJSON[fleet.Rollout](ctx, s.pool, "SELECT record FROM rollouts WHERE id = $1", id)
	if err == nil && len(out) == 0 {
		err = fleet.ErrNotFound
	}
	if err != nil {
		return fleet.Rollout{}, fmt.Errorf("rollout %s: %w", id, err)
	}
	return out[0], nil
}

// Desired implements fleet.UpdateStore.
func (s *Store) Desired(ctx context.Context) ([]fleet.DeviceDesired, error) {
	out, err := queryJSON[fleet.DeviceDesired](ctx, s.pool, "SELECT record FROM desired ORDER BY device")
	if err != nil {
		return nil, fmt.Errorf("list desired states: %w", err)
	}
	return out, nil
}

// SetDeviceTags implements fleet.UpdateStore.
func (s *Store) SetDeviceTags(ctx context.Context, device string, tags map[string]string) error {
	if err := wire.ValidDeviceID(device); err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	var err error
	if len(tags) == 0 {
		_, err = s.pool.Exec(ctx, "DELETE FROM tags WHERE device = $1", device)
	} else {
		var v []byte
		if v, err = json.Marshal(tags); err == nil {
			_, err = s.pool.Exec(ctx, `INSERT INTO tags (device, tags) VALUES ($1, $2::json)
				ON CONFLICT (device) DO UPDATE SET tags = excluded.tags`, device, string(v))
		}
	}
	if err != nil {
		return fmt.Errorf("set tags of %s: %w", device, err)
	}
	return nil
}

// DeviceTags implements fleet.UpdateStore.
func (s *Store) DeviceTags(ctx context.Context) (map[string]map[string]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT device, tags FROM tags")
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	out := map[string]map[string]string{}
	var dev string
	var raw []byte
	if _, err := pgx.ForEachRow(rows, []any{&dev, &raw}, func() error {
		var m map[string]string
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("decode tags of %s: %w", dev, err)
		}
		out[dev] = m
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	return out, nil
}
