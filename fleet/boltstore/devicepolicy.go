package boltstore

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// PutDevicePolicy implements fleet.PolicyStore.
func (s *Store) PutDevicePolicy(_ context.Context, p fleet.DevicePolicy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPolicies)
		if p.Empty() {
			return b.Delete([]byte(p.Device))
		}
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return b.Put([]byte(p.Device), v)
	})
	if err != nil {
		return fmt.Errorf("put monitoring settings of %s: %w", p.Device, err)
	}
	return nil
}

// DevicePolicies implements fleet.PolicyStore.
func (s *Store) DevicePolicies(_ context.Context) ([]fleet.DevicePolicy, error) {
	out, err := list[fleet.DevicePolicy](s.db, bucketPolicies)
	if err != nil {
		return nil, fmt.Errorf("list monitoring settings: %w", err)
	}
	return out, nil
}

// PutDesired implements fleet.PolicyStore.
func (s *Store) PutDesired(_ context.Context, desired []fleet.DeviceDesired) error {
	for _, d := range desired {
		if err := wire.ValidDeviceID(d.Device); err != nil {
			return fmt.Errorf("put desired states: %w", err)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDesired)
		for _, d := range desired {
			v, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(d.Device), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put desired states: %w", err)
	}
	return nil
}
