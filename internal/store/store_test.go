package store

import (
	"context"
	"testing"
	"time"
)

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenEmbedded(ctx, EmbeddedOptions{Dir: dir, NoFsync: true})
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("a commit writes every key at one revision", func(t *testing.T) {
		rev, err := s.Commit(ctx, []Write{{Key: "/t/a", Value: []byte("1")}, {Key: "/t/b", Value: []byte("2")}})
		if err != nil {
			t.Fatal(err)
		}
		kvs, listRev, err := s.List(ctx, "/t/")
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) != 2 || kvs[0].Key != "/t/a" || kvs[1].ModRevision != rev || listRev < rev {
			t.Fatalf("list = %+v at %d, want a and b at %d", kvs, listRev, rev)
		}
	})

	t.Run("watch sees puts and deletes after the listed revision", func(t *testing.T) {
		_, rev, err := s.List(ctx, "/t/")
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		events, _ := s.Watch(wctx, "/t/", rev+1)
		if _, err := s.Commit(ctx, []Write{{Key: "/t/c", Value: []byte("3")}, {Key: "/t/a", Delete: true}}); err != nil {
			t.Fatal(err)
		}
		got := []Event{<-events, <-events}
		if got[0].Type != EventPut || got[0].KV.Key != "/t/c" || got[1].Type != EventDelete || got[1].KV.Key != "/t/a" {
			t.Fatalf("events = %+v", got)
		}
	})

	t.Run("a released lease removes its key after the ttl", func(t *testing.T) {
		l, err := s.PutLeased(ctx, "/t/leased", []byte("x"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond) // kept alive past its ttl
		if _, found, _ := s.Get(ctx, "/t/leased"); !found {
			t.Fatal("leased key vanished while its lease was renewed")
		}
		l.Release()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, found, _ := s.Get(ctx, "/t/leased"); !found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("leased key still present 10s after release")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	s.Close()
	t.Run("data survives a restart", func(t *testing.T) {
		s2 := openTestStore(t, dir)
		defer s2.Close()
		kv, found, err := s2.Get(ctx, "/t/b")
		if err != nil || !found || string(kv.Value) != "2" {
			t.Fatalf("get after restart = %q, %v, %v", kv.Value, found, err)
		}
	})
}

func TestExternalStoreSharesStateWithItsCluster(t *testing.T) {
	// An embedded etcd stands in for the operator's cluster: it is real etcd
	// reached over its loopback client port, as an external one would be.
	cluster := openTestStore(t, t.TempDir())
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ext, err := OpenExternal(ctx, cluster.Endpoints())
	if err != nil {
		t.Fatalf("open external store at %v: %v", cluster.Endpoints(), err)
	}
	defer ext.Close()
	if _, err := ext.Commit(ctx, []Write{{Key: "/x/a", Value: []byte("from external")}}); err != nil {
		t.Fatal(err)
	}
	kv, found, err := cluster.Get(ctx, "/x/a")
	if err != nil || !found || string(kv.Value) != "from external" {
		t.Fatalf("cluster sees %q, %v, %v", kv.Value, found, err)
	}
}

func TestExternalStoreThatIsDownFailsClearly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := OpenExternal(ctx, []string{"http://127.0.0.1:1"})
	if err == nil {
		t.Fatal("opened a store with nothing listening")
	}
	t.Logf("error: %v", err)
}
