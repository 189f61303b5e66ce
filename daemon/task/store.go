package task

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store makes a submitter's records durable in a bbolt file, with group
// commits: a writer names the records it changed (persist) and waits;
// one goroutine commits every record named since the previous commit in
// one transaction, encoding each as it is at that moment (so a later
// commit never writes an older state over a newer one), then wakes the
// writers. Writes arriving during a commit join the next one: under load
// a commit carries many records, with one task in flight it carries one.
//
// bbolt writes a transaction copy-on-write and switches to it with one
// meta page write after an fsync, so a crash at any point leaves the file
// at the previous or the new commit: what persist acknowledged is there,
// and the file opens.
//
// A store without a file (path "") keeps nothing: persist returns at
// once.
type store struct {
	db       *bolt.DB
	snapshot func(ids []ID) (puts map[ID][]byte, dels []ID)

	mu      sync.Mutex // guards dirty, waiting, closed
	dirty   map[ID]struct{}
	waiting []func(error)
	closed  bool
	kick    chan struct{} // wakes the committer
	done    chan struct{} // closed when the committer has stopped
}

// bucket holds the records: key the task id, value its JSON.
var bucket = []byte("tasks")

// storeLockTimeout bounds the wait for the file's lock: a second process
// using the same file gets an error instead of hanging.
const storeLockTimeout = time.Second

// errStoreClosed is returned by persist after close.
var errStoreClosed = errors.New("task: store closed")

// openStore opens (creating it) the record file at path, or a store that
// keeps nothing for path "". snapshot encodes the named records as they
// are now: their JSON, or deletion for those that no longer exist.
func openStore(path string, snapshot func(ids []ID) (map[ID][]byte, []ID)) (*store, error) {
	st := &store{snapshot: snapshot, dirty: make(map[ID]struct{}), kick: make(chan struct{}, 1), done: make(chan struct{})}
	if path == "" {
		close(st.done)
		return st, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: storeLockTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("task: opening the store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("task: opening the store %s: %w", path, err)
	}
	st.db = db
	go st.commitLoop()
	return st, nil
}

// load calls fn with every record in the file.
func (st *store) load(fn func(id ID, data []byte) error) error {
	if st.db == nil {
		return nil
	}
	return st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if len(k) != IDSize {
				return nil // not ours
			}
			return fn(ID(k), v)
		})
	})
}

// persist writes the named records as they are when the next commit
// starts, and returns when that commit is on disk.
func (st *store) persist(ids ...ID) error {
	if st.db == nil {
		return nil
	}
	ch := make(chan error, 1)
	st.persistThen(ids, func(err error) { ch <- err })
	return <-ch
}

// persistThen is persist without the wait: done is called (on the
// committer's goroutine, so it must not block) once the commit is on
// disk, or at once when there is nothing to write.
func (st *store) persistThen(ids []ID, done func(error)) {
	if st.db == nil || len(ids) == 0 {
		done(nil)
		return
	}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		done(errStoreClosed)
		return
	}
	for _, id := range ids {
		st.dirty[id] = struct{}{}
	}
	st.waiting = append(st.waiting, done)
	st.kickLocked()
	st.mu.Unlock()
}

// kickLocked wakes the committer. st.mu must be held, so that close
// cannot close kick meanwhile.
func (st *store) kickLocked() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// persistAsync is persist without the wait.
func (st *store) persistAsync(ids ...ID) {
	if st.db == nil || len(ids) == 0 {
		return
	}
	st.mu.Lock()
	if !st.closed {
		for _, id := range ids {
			st.dirty[id] = struct{}{}
		}
		st.kickLocked()
	}
	st.mu.Unlock()
}

// commitLoop commits whatever is dirty, until close.
func (st *store) commitLoop() {
	defer close(st.done)
	for {
		_, open := <-st.kick
		for {
			st.mu.Lock()
			if len(st.dirty) == 0 {
				st.mu.Unlock()
				break
			}
			ids := make([]ID, 0, len(st.dirty))
			for id := range st.dirty {
				ids = append(ids, id)
			}
			clear(st.dirty)
			waiting := st.waiting
			st.waiting = nil
			st.mu.Unlock()

			puts, dels := st.snapshot(ids)
			err := st.db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucket)
				for id, v := range puts {
					if err := b.Put(id[:], v); err != nil {
						return err
					}
				}
				for _, id := range dels {
					if err := b.Delete(id[:]); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				err = fmt.Errorf("task: committing %d records: %w", len(ids), err)
			}
			for _, done := range waiting {
				done(err)
			}
		}
		if !open {
			return
		}
	}
}

// close commits what is dirty and closes the file.
func (st *store) close() error {
	if st.db == nil {
		return nil
	}
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		<-st.done
		return nil
	}
	st.closed = true
	close(st.kick)
	st.mu.Unlock()
	<-st.done
	return st.db.Close()
}
