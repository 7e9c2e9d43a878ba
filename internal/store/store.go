// Package store keeps weft's state in etcd: revisioned Get, List, Put,
// Delete and Watch over keys, atomic multi-key writes, and leased keys that
// vanish when their owner stops renewing them. etcd is either embedded in
// the control plane's data directory or an external cluster.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// KV is one key and its value at a revision.
type KV struct {
	Key   string
	Value []byte
	// ModRevision is the store revision of the key's last change.
	ModRevision int64
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	EventPut EventType = iota
	EventDelete
)

// Event is one change seen by Watch.
type Event struct {
	Type EventType
	KV   KV
}

// ErrCompacted is returned by Watch when the requested revision is no longer
// available; the caller must List again and watch from the new revision.
var ErrCompacted = errors.New("store: watch revision compacted")

// Store is a handle on etcd. Its methods are safe for concurrent use.
type Store struct {
	client *clientv3.Client
	close  func() error
	// endpoints are etcd's client URLs; for an embedded etcd, the loopback
	// URL it listens on.
	endpoints []string
}

// Endpoints returns etcd's client URLs.
func (s *Store) Endpoints() []string { return s.endpoints }

// Client exposes the underlying etcd client for operations the store does
// not wrap (used by tests and tools).
func (s *Store) Client() *clientv3.Client { return s.client }

// Close releases the client and, for an embedded store, stops etcd.
func (s *Store) Close() error { return s.close() }

// Get returns the value at key; found is false when it does not exist.
func (s *Store) Get(ctx context.Context, key string) (kv KV, found bool, err error) {
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return KV{}, false, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, false, nil
	}
	k := resp.Kvs[0]
	return KV{Key: string(k.Key), Value: k.Value, ModRevision: k.ModRevision}, true, nil
}

// List returns every key under prefix, sorted by key, and the store revision
// the listing reflects (watch from revision+1 to see later changes).
func (s *Store) List(ctx context.Context, prefix string) ([]KV, int64, error) {
	resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]KV, 0, len(resp.Kvs))
	for _, k := range resp.Kvs {
		out = append(out, KV{Key: string(k.Key), Value: k.Value, ModRevision: k.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

// Write is one change in an atomic batch: a put when Delete is false.
type Write struct {
	Key    string
	Value  []byte
	Delete bool
}

// Commit applies all writes atomically, in one etcd transaction, and returns
// the new store revision. Either every write happens or none does.
func (s *Store) Commit(ctx context.Context, writes []Write) (int64, error) {
	ops := make([]clientv3.Op, 0, len(writes))
	for _, w := range writes {
		if w.Delete {
			ops = append(ops, clientv3.OpDelete(w.Key))
		} else {
			ops = append(ops, clientv3.OpPut(w.Key, string(w.Value)))
		}
	}
	resp, err := s.client.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("commit %d writes: %w", len(writes), err)
	}
	return resp.Header.Revision, nil
}

// Create puts every write in one transaction if none of their keys exists
// yet, and otherwise writes nothing. Either way it returns what the keys
// hold afterwards, in the order of writes, and whether this call wrote them:
// when several processes race to create the same keys, exactly one wins and
// all of them see the winner's values. Deletes are not allowed in writes.
// It fails if only some of the keys exist.
func (s *Store) Create(ctx context.Context, writes []Write) ([]KV, bool, error) {
	cmps := make([]clientv3.Cmp, 0, len(writes))
	puts := make([]clientv3.Op, 0, len(writes))
	gets := make([]clientv3.Op, 0, len(writes))
	for _, w := range writes {
		if w.Delete {
			return nil, false, fmt.Errorf("create %s: a delete is not a create", w.Key)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(w.Key), "=", 0))
		puts = append(puts, clientv3.OpPut(w.Key, string(w.Value)))
		gets = append(gets, clientv3.OpGet(w.Key))
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	if err != nil {
		return nil, false, fmt.Errorf("create %d keys: %w", len(writes), err)
	}
	out := make([]KV, len(writes))
	if resp.Succeeded {
		for i, w := range writes {
			out[i] = KV{Key: w.Key, Value: w.Value, ModRevision: resp.Header.Revision}
		}
		return out, true, nil
	}
	var missing []string
	for i, r := range resp.Responses {
		kvs := r.GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			missing = append(missing, writes[i].Key)
			continue
		}
		out[i] = KV{Key: string(kvs[0].Key), Value: kvs[0].Value, ModRevision: kvs[0].ModRevision}
	}
	if len(missing) > 0 {
		return nil, false, fmt.Errorf("create: the store holds only some of the keys; missing %v", missing)
	}
	return out, false, nil
}

// Delete removes key, reports whether it existed, and returns the store
// revision after the delete.
func (s *Store) Delete(ctx context.Context, key string) (rev int64, deleted bool, err error) {
	resp, err := s.client.Delete(ctx, key)
	if err != nil {
		return 0, false, fmt.Errorf("delete %s: %w", key, err)
	}
	return resp.Header.Revision, resp.Deleted > 0, nil
}

// Watch sends every change under prefix from revision fromRev on, in order,
// until ctx is done; then the channel is closed. If the watch fails (for
// example because fromRev was compacted) the error is sent on errc and both
// channels are closed.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan Event, <-chan error) {
	events := make(chan Event, 64)
	errc := make(chan error, 1)
	wch := s.client.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev))
	go func() {
		defer close(events)
		defer close(errc)
		for resp := range wch {
			if resp.CompactRevision != 0 {
				errc <- ErrCompacted
				return
			}
			if err := resp.Err(); err != nil {
				errc <- fmt.Errorf("watch %s: %w", prefix, err)
				return
			}
			for _, ev := range resp.Events {
				e := Event{KV: KV{Key: string(ev.Kv.Key), Value: ev.Kv.Value, ModRevision: ev.Kv.ModRevision}}
				if ev.Type == clientv3.EventTypeDelete {
					e.Type = EventDelete
				}
				select {
				case events <- e:
				case <-ctx.Done():
					return
				}
			}
		}
		if ctx.Err() == nil {
			errc <- fmt.Errorf("watch %s: channel closed", prefix)
		}
	}()
	return events, errc
}

// Lease is a key that exists only while its holder keeps renewing it.
type Lease struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// PutLeased writes key=value bound to a new lease of ttl and renews the
// lease in the background. After Release (or when renewal becomes
// impossible because the store is gone) the key lives on for at most ttl and
// then disappears: that is how a registration outlives a brief disconnect.
func (s *Store) PutLeased(ctx context.Context, key string, value []byte, ttl time.Duration) (*Lease, error) {
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	grant, err := s.client.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("grant lease for %s: %w", key, err)
	}
	if _, err := s.client.Put(ctx, key, string(value), clientv3.WithLease(grant.ID)); err != nil {
		return nil, fmt.Errorf("put %s: %w", key, err)
	}
	kctx, cancel := context.WithCancel(context.Background())
	ch, err := s.client.KeepAlive(kctx, grant.ID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("keep lease for %s alive: %w", key, err)
	}
	l := &Lease{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for range ch { // drain keep-alive answers until cancelled
		}
	}()
	return l, nil
}

// Release stops renewing the lease; the key expires after its TTL.
func (l *Lease) Release() {
	l.cancel()
	<-l.done
}
