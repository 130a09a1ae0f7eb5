package boltstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// Update state layout:
//
//	models/{name}@{version}   JSON fleet.Model
//	packages/{sha256 hex}     the .opkg bytes
//	rollouts/{id}             JSON fleet.Rollout
//	desired/{device}          JSON fleet.DeviceDesired
//	tags/{device}             JSON map[string]string
//	policies/{device}         JSON fleet.DevicePolicy (devicepolicy.go)
var (
	bucketModels   = []byte("models")
	bucketPackages = []byte("packages")
	bucketRollouts = []byte("rollouts")
	bucketDesired  = []byte("desired")
	bucketTags     = []byte("tags")
	bucketPolicies = []byte("policies")
	updateBuckets  = [][]byte{bucketModels, bucketPackages, bucketRollouts, bucketDesired, bucketTags, bucketPolicies}
)

func modelKey(name, version string) []byte { return []byte(name + "@" + version) }

// PutModel implements fleet.UpdateStore.
func (s *Store) PutModel(_ context.Context, m fleet.Model, pkg []byte) error {
	if m.Name == "" || m.Version == "" || m.SHA256 == "" || strings.Contains(m.Name, "@") {
		return fmt.Errorf("put model %s@%s: name, version and sha256 are required", m.Name, m.Version)
	}
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode model %s@%s: %w", m.Name, m.Version, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPackages).Put([]byte(m.SHA256), pkg); err != nil {
			return err
		}
		return tx.Bucket(bucketModels).Put(modelKey(m.Name, m.Version), v)
	})
	if err != nil {
		return fmt.Errorf("put model %s@%s: %w", m.Name, m.Version, err)
	}
	return nil
}

// Models implements fleet.UpdateStore.
func (s *Store) Models(_ context.Context) ([]fleet.Model, error) {
	out, err := list[fleet.Model](s.db, bucketModels)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	slices.SortFunc(out, func(a, b fleet.Model) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Release, b.Release))
	})
	return out, nil
}

// Model implements fleet.UpdateStore.
func (s *Store) Model(_ context.Context, name, version string) (fleet.Model, error) {
	var m fleet.Model
	err := get(s.db, bucketModels, modelKey(name, version), &m)
	if err != nil {
		return m, fmt.Errorf("model %s@%s: %w", name, version, err)
	}
	return m, nil
}

// Package implements fleet.UpdateStore.
func (s *Store) Package(_ context.Context, sha string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPackages).Get([]byte(sha))
		if v == nil {
			return fleet.ErrNotFound
		}
		out = slices.Clone(v) // bbolt memory is valid only inside the transaction
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("package %s: %w", sha, err)
	}
	return out, nil
}

// PutRollout implements fleet.UpdateStore.
func (s *Store) PutRollout(_ context.Context, r fleet.Rollout, desired []fleet.DeviceDesired) error {
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
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRollouts).Put([]byte(r.ID), v); err != nil {
			return err
		}
		b := tx.Bucket(bucketDesired)
		for _, d := range desired {
			dv, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(d.Device), dv); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put rollout %s: %w", r.ID, err)
	}
	return nil
}

// Rollouts implements fleet.UpdateStore.
func (s *Store) Rollouts(_ context.Context) ([]fleet.Rollout, error) {
	out, err := list[fleet.Rollout](s.db, bucketRollouts)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	slices.SortStableFunc(out, func(a, b fleet.Rollout) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Rollout implements fleet.UpdateStore.
func (s *Store) Rollout(_ context.Context, id string) (fleet.Rollout, error) {
	var r fleet.Rollout
	if err := get(s.db, bucketRollouts, []byte(id), &r); err != nil {
		return r, fmt.Errorf("rollout %s: %w", id, err)
	}
	return r, nil
}

// Desired implements fleet.UpdateStore.
func (s *Store) Desired(_ context.Context) ([]fleet.DeviceDesired, error) {
	out, err := list[fleet.DeviceDesired](s.db, bucketDesired)
	if err != nil {
		return nil, fmt.Errorf("list desired states: %w", err)
	}
	return out, nil
}

// SetDeviceTags implements fleet.UpdateStore.
func (s *Store) SetDeviceTags(_ context.Context, device string, tags map[string]string) error {
	if err := wire.ValidDeviceID(device); err != nil {
		return fmt.Errorf("set tags: %w", err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTags)
		if len(tags) == 0 {
			return b.Delete([]byte(device))
		}
		v, err := json.Marshal(tags)
		if err != nil {
			return err
		}
		return b.Put([]byte(device), v)
	})
	if err != nil {
		return fmt.Errorf("set tags of %s: %w", device, err)
	}
	return nil
}

// DeviceTags implements fleet.UpdateStore.
func (s *Store) DeviceTags(_ context.Context) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTags).ForEach(func(k, v []byte) error {
			var m map[string]string
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode tags of %s: %w", k, err)
			}
			out[string(k)] = m
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tags: %w", err)
	}
	return out, nil
}

// list decodes every JSON value of bucket, in key order.
func list[T any](db *bolt.DB, bucket []byte) ([]T, error) {
	var out []T
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return fmt.Errorf("decode %s/%s: %w", bucket, k, err)
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

// get decodes one JSON value, or returns fleet.ErrNotFound.
func get(db *bolt.DB, bucket, key []byte, into any) error {
	return db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucket).Get(key)
		if v == nil {
			return fleet.ErrNotFound
		}
		return json.Unmarshal(v, into)
	})
}
