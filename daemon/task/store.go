package task

import "errors"

// store makes a submitter's records durable. This version keeps nothing:
// records live in memory only.
type store struct{}

// openStore returns a store for path; only "" (memory) is supported yet.
func openStore(path string, _ func(ids []ID) (map[ID][]byte, []ID)) (*store, error) {
	if path != "" {
		return nil, errors.New("task: durable stores are not supported yet")
	}
	return &store{}, nil
}

// load calls fn with every stored record: none.
func (st *store) load(func(id ID, data []byte) error) error { return nil }

// persist makes the named records durable: nothing to do in memory.
func (st *store) persist(...ID) error { return nil }

// persistAsync is persist without the wait.
func (st *store) persistAsync(...ID) {}

// close closes the store.
func (st *store) close() error { return nil }
