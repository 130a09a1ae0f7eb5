package pgstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// PutDevicePolicy implements fleet.PolicyStore.
func (s *Store) PutDevicePolicy(ctx context.Context, p fleet.DevicePolicy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	var err error
	if p.Empty() {
		_, err = s.pool.Exec(ctx, "DELETE FROM device_policies WHERE device = $1", p.Device)
	} else {
		var v []byte
		if v, err = json.Marshal(p); err == nil {
			_, err = s.pool.Exec(ctx, `INSERT INTO device_policies (device, record) VALUES ($1, $2::json)
				ON CONFLICT (device) DO UPDATE SET record = excluded.record`, p.Device, string(v))
		}
	}
	if err != nil {
		return fmt.Errorf("put monitoring settings of %s: %w", p.Device, err)
	}
	return nil
}

// DevicePolicies implements fleet.PolicyStore.
func (s *Store) DevicePolicies(ctx context.Context) ([]fleet.DevicePolicy, error) {
	out, err := queryJSON[fleet.DevicePolicy](ctx, s.pool, "SELECT record FROM device_policies ORDER BY device")
	if err != nil {
		return nil, fmt.Errorf("list monitoring settings: %w", err)
	}
	return out, nil
}

// PutDesired implements fleet.PolicyStore.
func (s *Store) PutDesired(ctx context.Context, desired []fleet.DeviceDesired) error {
	if len(desired) == 0 {
		return nil
	}
	devs := make([]string, len(desired))
	recs := make([]string, len(desired))
	for i, d := range desired {
		if err := wire.ValidDeviceID(d.Device); err != nil {
			return fmt.Errorf("put desired states: %w", err)
		}
		v, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("put desired states: %w", err)
		}
		devs[i], recs[i] = d.Device, string(v)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// The last state given for a device wins, as in PutRollout.
		_, err := tx.Exec(ctx, `INSERT INTO desired (device, record)
			SELECT DISTINCT ON (d) d, rec::json FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(d, rec, n)
			ORDER BY d, n DESC
			ON CONFLICT (device) DO UPDATE SET record = excluded.record`, devs, recs)
		return err
	})
	if err != nil {
		return fmt.Errorf("put desired states: %w", err)
	}
	return nil
}
