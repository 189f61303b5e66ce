package task

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashRecord is the content the crash test writes for record n: enough
// bytes that a commit of many records spans many pages.
func crashRecord(n uint64) (ID, []byte) {
	var id ID
	binary.BigEndian.PutUint64(id[8:], n)
	id[0] = 1
	return id, fmt.Appendf(nil, `{"n":%d,"pad":%q}`, n, bytes.Repeat([]byte{'a' + byte(n%26)}, 1500))
}

// crashChildEnv names the store file a re-executed test binary writes to.
const crashChildEnv = "TASK_STORE_CRASH_CHILD"

// TestStoreCrashChild is the child of TestStoreCrashMidCommit: it writes
// records from several goroutines, as fast as group commits go, and prints
// each record's number once persist has acknowledged it.
func TestStoreCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("run by TestStoreCrashMidCommit")
	}
	first, _ := strconv.ParseUint(os.Getenv(crashChildEnv+"_FIRST"), 10, 64)
	st, err := openStore(path, func(ids []ID) (map[ID][]byte, []ID) {
		puts := make(map[ID][]byte, len(ids))
		for _, id := range ids {
			_, puts[id] = crashRecord(binary.BigEndian.Uint64(id[8:]))
		}
		return puts, nil
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var next = first
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				n := next
				next++
				mu.Unlock()
				id, _ := crashRecord(n)
				if err := st.persist(id); err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d\n", n)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// A process killed at a random moment while it commits leaves a file that
// opens and holds every record it acknowledged. The child is this test
// binary, run again; it is killed with SIGKILL (no chance to clean up)
// several times over the same file.
func TestStoreCrashMidCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	path := filepath.Join(t.TempDir(), "tasks.db")
	acked := map[uint64]bool{}
	var next uint64
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStoreCrashChild$", "-test.v=false")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashChildEnv+"_FIRST="+strconv.FormatUint(next, 10))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it acknowledge a few hundred records, then kill it at a
		// random moment: most of the time a commit is in progress.
		sc := bufio.NewScanner(stdout)
		want := 200 + rand.IntN(300)
		got := 0
		for sc.Scan() {
			n, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child said %q", round, sc.Text())
			}
			acked[n] = true
			next = max(next, n+1)
			if got++; got == want {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if got < want {
			t.Fatalf("round %d: the child acknowledged %d records and ended", round, got)
		}
		next += 1000 // records the child may have had in flight

		found := map[uint64]bool{}
		st, err := openStore(path, nil)
		if err != nil {
			t.Fatalf("round %d: the store does not open after a crash: %v", round, err)
		}
		err = st.load(func(id ID, data []byte) error {
			n := binary.BigEndian.Uint64(id[8:])
			if _, want := crashRecord(n); !bytes.Equal(data, want) {
				return fmt.Errorf("record %d is corrupt", n)
			}
			found[n] = true
			return nil
		})
		st.close()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for n := range acked {
			if !found[n] {
				t.Fatalf("round %d: record %d was acknowledged and is gone", round, n)
			}
		}
		t.Logf("round %d: %d records acknowledged in all, %d in the file", round, len(acked), len(found))
	}
}

// Group commits write each record as it is when the commit starts, delete
// the records that are gone, and stop cleanly.
func TestStoreGroupCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	var mu sync.Mutex
	live := map[ID][]byte{}
	snapshot := func(ids []ID) (map[ID][]byte, []ID) {
		mu.Lock()
		defer mu.Unlock()
		puts := map[ID][]byte{}
		var dels []ID
		for _, id := range ids {
			if v, ok := live[id]; ok {
				puts[id] = v
			} else {
				dels = append(dels, id)
			}
		}
		return puts, dels
	}
	st, err := openStore(path, snapshot)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := testID(byte(i))
			mu.Lock()
			live[id] = fmt.Appendf(nil, "%d", i)
			mu.Unlock()
			if err := st.persist(id); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	delete(live, testID(7))
	live[testID(8)] = []byte("changed")
	mu.Unlock()
	st.persistAsync(testID(7), testID(8))
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	if err := st.persist(testID(9)); err != errStoreClosed {
		t.Fatalf("persist after close: %v", err)
	}
	st, err = openStore(path, snapshot)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	got := map[ID]string{}
	st.load(func(id ID, data []byte) error {
		got[id] = string(data)
		return nil
	})
	if len(got) != 49 || got[testID(8)] != "changed" || got[testID(3)] != "3" {
		t.Fatalf("reopened store holds %d records: %v", len(got), got[testID(8)])
	}
	if _, ok := got[testID(7)]; ok {
		t.Fatal("a deleted record survived")
	}
}

// A second process (or submitter) cannot open a store in use.
func TestStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	st, err := openStore(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if _, err := openStore(path, nil); err == nil {
		t.Fatal("a second store opened the same file")
	}
}
