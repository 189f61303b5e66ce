package meshnet

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// deadline is the deadline of one direction of a Conn or PacketConn, as a
// context the blocking calls wait on: it is canceled with
// os.ErrDeadlineExceeded when the deadline passes, and with the parent's
// cause (net.ErrClosed) when the conn closes. A call blocked on it sees a
// deadline moved later or earlier, because the context is replaced only
// once it expired and its timer is re-armed, never canceled early.
type deadline struct {
	parent context.Context

	// mu guards the fields below.
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	// gen counts set calls, so a timer that fired while set replaced it
	// cancels nothing.
	gen uint64
}

func newDeadline(parent context.Context) *deadline {
	d := &deadline{parent: parent}
	d.ctx, d.cancel = context.WithCancelCause(parent)
	return d
}

// context returns the context the next blocking call waits on.
func (d *deadline) context() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}

// set moves the deadline to t; the zero t means none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.ctx.Err() != nil && d.parent.Err() == nil {
		d.ctx, d.cancel = context.WithCancelCause(d.parent)
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		d.cancel(os.ErrDeadlineExceeded)
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen {
			d.cancel(os.ErrDeadlineExceeded)
		}
	})
}

// stop disarms the timer; the conn is closing.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// cause returns err, or why ctx ended when err is ctx's own error: the
// deadline (os.ErrDeadlineExceeded, a timeout) or the close
// (net.ErrClosed).
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return context.Cause(ctx)
	}
	return err
}

// deadlines is the closing state and the two deadlines a Conn and a
// PacketConn share.
type deadlines struct {
	// closed is canceled with net.ErrClosed by close; rd and wd derive
	// from it.
	closed    context.Context
	closeConn context.CancelCauseFunc
	closeOnce sync.Once
	rd, wd    *deadline
}

func (d *deadlines) open() {
	d.closed, d.closeConn = context.WithCancelCause(context.Background())
	d.rd, d.wd = newDeadline(d.closed), newDeadline(d.closed)
}

// close cancels both deadlines' contexts with net.ErrClosed. It reports
// whether this was the first call.
func (d *deadlines) close() bool {
	first := false
	d.closeOnce.Do(func() {
		first = true
		d.closeConn(net.ErrClosed)
		d.rd.stop()
		d.wd.stop()
	})
	return first
}

// setRead and setWrite move a deadline; they fail with net.ErrClosed
// after close.
func (d *deadlines) setRead(t time.Time) error  { return d.set(d.rd, t) }
func (d *deadlines) setWrite(t time.Time) error { return d.set(d.wd, t) }

func (d *deadlines) set(dl *deadline, t time.Time) error {
	if d.closed.Err() != nil {
		return net.ErrClosed
	}
	dl.set(t)
	return nil
}
