package channel

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/netmesh/netmesh/identity"
)

// Message is one published message as a subscriber receives it.
type Message struct {
	Publisher identity.NodeID
	Channel   string
	// Seq is the publisher's sequence number for the channel, from 1.
	// A jump means messages were lost on the way (see
	// SubscriptionStats.Lost) or dropped by this subscription's queue.
	Seq     uint64
	Payload []byte // owned by the receiver
}

// Subscription is this node's membership of one publisher's channel. It
// queues what arrives, up to the pending limit the publisher set
// (Config.PendingLimit) and this node's own caps (Options.MaxPending and
// Options.MaxPendingBytes); when the queue is full new messages are
// dropped and counted, and Recv reports ErrSlowConsumer at the point of
// the drop, so a slow consumer costs bounded memory and never slows the
// publisher or the node.
//
// A subscription survives its publisher going away: when the session with
// the publisher ends (the publisher restarted, the network failed), Recv
// reports ErrPublisherLost and the engine subscribes again, as soon as
// the publisher's session is back and then with backoff, presenting the
// same token; once admitted again Recv reports ErrResubscribed.
//
// A subscription ends when Unsubscribe is called or when the publisher
// ends it (unregistered channel, expired or revoked token, changed policy)
// or refuses it when it subscribes again; Recv then returns
// ErrUnsubscribed or a *RejectError with Evicted set, after the queued
// messages.
type Subscription struct {
	e         *Engine
	publisher identity.NodeID
	name      string
	token     []byte     // the token presented, encoded; sent again to resubscribe
	reqID     uint64     // of the request waiting for an answer; guarded by e.mu
	answer    chan error // the first request's ack (nil) or rejection, once

	// Guarded by e.mu: the subscription was admitted (the first request
	// answered), the publisher was lost since, and the next attempt to
	// subscribe again is due at retryAt, backoff after the previous.
	admitted bool
	lost     bool
	retryAt  time.Time
	backoff  time.Duration

	mu       sync.Mutex // guards the fields below
	buf      []entry    // ring buffer of queued messages
	head, n  int
	bytes    int    // payload bytes queued
	limit    int    // messages queued at most
	maxBytes int    // payload bytes queued at most
	dropping uint64 // drops since the last queued message
	lastSeq  uint64
	stats    SubscriptionStats
	err      error         // terminal error, set once
	notify   chan struct{} // signalled (cap 1) when a message or the end arrives
	done     chan struct{} // closed at the end
}

type entry struct {
	msg     Message
	dropped uint64 // messages dropped just before this one
	// notice, when set, is what this entry is instead of a message:
	// ErrPublisherLost or ErrResubscribed.
	notice error
}

// SubscriptionStats counts what a subscription received.
type SubscriptionStats struct {
	Received uint64 // messages queued
	Dropped  uint64 // messages dropped because the queue was full
	Lost     uint64 // messages missing from the publisher's sequence (lost in transit)
}

// Subscribe joins channel name of publisher pub, presenting tok (nil for
// none), and waits for the publisher's answer. ctx bounds the wait; without
// a deadline it is DefaultSubscribeTimeout. A refusal is a *RejectError
// (errors.Is matches ErrUnknownChannel, ErrUnauthorized, ErrRateLimited or
// ErrTooManySubscribers). It fails with ErrAlreadySubscribed if this node
// already has a subscription (or a pending request) for pub and name.
func (e *Engine) Subscribe(ctx context.Context, pub identity.NodeID, name string, tok *identity.PermissionToken) (*Subscription, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	var tb []byte
	if tok != nil {
		var err error
		if tb, err = tok.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultSubscribeTimeout)
		defer cancel()
	}
	s := &Subscription{
		e:         e,
		publisher: pub,
		name:      name,
		token:     tb,
		answer:    make(chan error, 1),
		limit:     min(DefaultPendingLimit, e.opt.MaxPending),
		maxBytes:  e.opt.MaxPendingBytes,
		notify:    make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	e.mu.Lock()
	if e.subs[pub][name] != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %s %q", ErrAlreadySubscribed, pub.Short(), name)
	}
	if e.subs[pub] == nil {
		e.subs[pub] = make(map[string]*Subscription)
	}
	// Registered before the request goes out, so a publish that overtakes
	// the ack is queued, not dropped.
	e.subs[pub][name] = s
	e.nextReq++
	s.reqID = e.nextReq
	e.waiters[s.reqID] = s
	e.mu.Unlock()

	err := e.send(pub, &message{typ: msgSubscribe, reqID: s.reqID, name: []byte(name), token: tb})
	if err == nil {
		select {
		case err = <-s.answer:
			if err == nil {
				return s, nil
			}
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	// Failed: forget the request, and tell the publisher in case it
	// admitted us after all (the ack may be on its way).
	e.mu.Lock()
	e.forgetLocked(s)
	e.mu.Unlock()
	if _, rejected := err.(*RejectError); !rejected {
		_ = e.send(pub, &message{typ: msgUnsubscribe, name: []byte(name)})
	}
	s.end(ErrUnsubscribed)
	return nil, err
}

// forgetLocked removes s from the subscription and waiter tables.
func (e *Engine) forgetLocked(s *Subscription) bool {
	delete(e.waiters, s.reqID)
	if e.subs[s.publisher][s.name] != s {
		return false
	}
	delete(e.subs[s.publisher], s.name)
	if len(e.subs[s.publisher]) == 0 {
		delete(e.subs, s.publisher)
	}
	return true
}

// handleAnswer completes the Subscribe waiting for an ack or rejection,
// or a resubscription (see PeerUp): an ack resumes it, a rejection ends
// it. Answers from anyone but the publisher asked, and late answers, are
// ignored.
func (e *Engine) handleAnswer(from identity.NodeID, m *message) {
	e.mu.Lock()
	s := e.waiters[m.reqID]
	if s == nil || s.publisher != from {
		e.mu.Unlock()
		return
	}
	delete(e.waiters, m.reqID)
	again := s.admitted
	var err error
	if m.typ == msgAck {
		s.admitted, s.lost, s.backoff = true, false, 0
		s.mu.Lock()
		s.limit = min(int(m.pending), e.opt.MaxPending)
		if again {
			s.lastSeq = 0 // a publisher that restarted counts from 1
			s.noticeLocked(ErrResubscribed)
		}
		s.mu.Unlock()
	} else {
		e.forgetLocked(s)
		err = &RejectError{Publisher: from, Channel: s.name, Reason: m.reason, Token: m.problem, Evicted: again}
	}
	e.mu.Unlock()
	switch {
	case !again:
		s.answer <- err
	case err != nil:
		s.end(err)
	}
}

// PeerDown tells the engine that the session with peer id is gone. Each
// subscription to a channel of id is lost (Recv reports
// ErrPublisherLost) and subscribes again, with backoff, until the
// publisher admits it again (ErrResubscribed) or refuses it (it ends).
func (e *Engine) PeerDown(id identity.NodeID) {
	now := e.opt.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.subs[id] {
		if !s.admitted || s.lost {
			continue // the first request's wait, or lost already
		}
		s.lost, s.backoff, s.retryAt = true, 0, now
		delete(e.waiters, s.reqID)
		s.mu.Lock()
		s.noticeLocked(ErrPublisherLost)
		s.mu.Unlock()
	}
}

// PeerUp tells the engine that a session with peer id is established:
// the subscriptions lost with it subscribe again at once.
func (e *Engine) PeerUp(id identity.NodeID) {
	e.mu.Lock()
	var due []*Subscription
	for _, s := range e.subs[id] {
		if s.lost {
			s.backoff = 0
			due = append(due, e.resubscribeLocked(s, e.opt.Now()))
		}
	}
	e.mu.Unlock()
	e.sendResubscribes(due, false)
}

// retryLost subscribes again those lost subscriptions whose retry is due.
// Tick calls it.
func (e *Engine) retryLost(now time.Time) {
	e.mu.Lock()
	var due []*Subscription
	for _, subs := range e.subs {
		for _, s := range subs {
			if s.lost && !now.Before(s.retryAt) {
				due = append(due, e.resubscribeLocked(s, now))
			}
		}
	}
	e.mu.Unlock()
	e.sendResubscribes(due, true)
}

// resubscribeLocked files a new request for the lost subscription s and
// schedules the next attempt: after ResubscribeMin, doubling up to
// ResubscribeMax.
func (e *Engine) resubscribeLocked(s *Subscription, now time.Time) *Subscription {
	delete(e.waiters, s.reqID)
	e.nextReq++
	s.reqID = e.nextReq
	e.waiters[s.reqID] = s
	s.backoff = min(max(2*s.backoff, ResubscribeMin), ResubscribeMax)
	s.retryAt = now.Add(s.backoff)
	return s
}

// sendResubscribes sends the requests resubscribeLocked filed; reach asks
// a Transport that can to set up the session with a publisher that has
// none.
func (e *Engine) sendResubscribes(subs []*Subscription, reach bool) {
	for _, s := range subs {
		e.mu.RLock()
		req := s.reqID
		e.mu.RUnlock()
		err := e.send(s.publisher, &message{typ: msgSubscribe, reqID: req, name: []byte(s.name), token: s.token})
		if r, ok := e.tr.(Reacher); ok && err != nil && reach {
			r.Reach(s.publisher)
		}
	}
}

// handlePublish queues a published message to its subscription. A message
// for no subscription is answered with an unsubscribe, so a publisher that
// missed one stops sending.
func (e *Engine) handlePublish(from identity.NodeID, m *message) {
	e.mu.RLock()
	s := e.subs[from][string(m.name)]
	e.mu.RUnlock()
	if s == nil {
		e.st.stray.Add(1)
		_ = e.send(from, &message{typ: msgUnsubscribe, name: m.name})
		return
	}
	if s.push(m.seq, m.payload) {
		e.st.delivered.Add(1)
	} else {
		e.st.dropped.Add(1)
	}
}

// handleEnd ends the subscription the publisher removed. An end that
// overtakes the ack (or replaces a lost one) answers the waiting
// Subscribe with the publisher's reason.
func (e *Engine) handleEnd(from identity.NodeID, m *message) {
	e.mu.Lock()
	s := e.subs[from][string(m.name)]
	waiting := false
	if s != nil {
		waiting = e.waiters[s.reqID] == s && !s.admitted
		e.forgetLocked(s)
	}
	e.mu.Unlock()
	if s == nil {
		return
	}
	err := &RejectError{Publisher: from, Channel: s.name, Reason: m.reason, Token: m.problem, Evicted: true}
	s.end(err)
	if waiting {
		s.answer <- err // the only answer: handleAnswer finds no waiter now
	}
}

// noticeLocked queues notice for Recv, in its place among the messages.
// A notice repeats nothing: the same notice as the last one queued is
// dropped, and a notice that undoes the last one with nothing between
// replaces it if the one before is the same, so that at most two notices
// in a row wait, whatever a peer does to its sessions. s.mu is held.
func (s *Subscription) noticeLocked(notice error) {
	if s.err != nil {
		return
	}
	at := func(i int) *entry { return &s.buf[(s.head+i)%len(s.buf)] }
	if s.n > 0 {
		if last := at(s.n - 1); last.notice == notice {
			return
		} else if last.notice != nil && s.n > 1 && at(s.n-2).notice == notice {
			s.dropping += last.dropped
			*last = entry{} // lost, back, lost: lost
			s.n--
			return
		}
	}
	s.grow(maxNotices)
	*at(s.n) = entry{notice: notice, dropped: s.dropping}
	s.n++
	s.dropping = 0
	s.signal()
}

// maxNotices is how many notices may wait in a row (see noticeLocked).
const maxNotices = 2

// grow makes room for one more entry: the ring doubles, up to the
// pending limit and extra more (room for notices).
func (s *Subscription) grow(extra int) {
	if s.n < len(s.buf) {
		return
	}
	size := min(max(2*len(s.buf), 16), s.limit+extra)
	if size <= s.n { // the publisher lowered the limit since
		size = s.n + 1
	}
	nb := make([]entry, size)
	for i := range s.n {
		nb[i] = s.buf[(s.head+i)%len(s.buf)]
	}
	s.buf, s.head = nb, 0
}

// push queues a copy of payload; it reports false when the queue is full
// (the message is dropped and counted) or the subscription ended.
func (s *Subscription) push(seq uint64, payload []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false
	}
	if seq > s.lastSeq+1 && s.lastSeq != 0 {
		s.stats.Lost += seq - s.lastSeq - 1
	}
	s.lastSeq = max(s.lastSeq, seq)
	if s.n >= s.limit || s.bytes+len(payload) > s.maxBytes {
		s.dropping++
		s.stats.Dropped++
		s.signal()
		return false
	}
	// Memory follows the backlog, not the limit.
	s.grow(0)
	s.buf[(s.head+s.n)%len(s.buf)] = entry{
		msg:     Message{Publisher: s.publisher, Channel: s.name, Seq: seq, Payload: append([]byte(nil), payload...)},
		dropped: s.dropping,
	}
	s.n++
	s.bytes += len(payload)
	s.dropping = 0
	s.stats.Received++
	s.signal()
	return true
}

// signal wakes a waiting Recv. s.mu is held.
func (s *Subscription) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// end ends the subscription with err, once.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
	}
}

// Recv returns the next message, waiting for one until ctx is done. After
// messages were dropped it returns an error wrapping ErrSlowConsumer once,
// in their place; when the publisher was lost, ErrPublisherLost, and when
// it admitted the subscription again, ErrResubscribed; these errors are
// not terminal. When the subscription has ended and its queue is drained
// it returns ErrUnsubscribed or the publisher's *RejectError.
func (s *Subscription) Recv(ctx context.Context) (Message, error) {
	for {
		s.mu.Lock()
		if s.n > 0 {
			en := &s.buf[s.head]
			if d := en.dropped; d > 0 {
				en.dropped = 0
				s.signal() // the message stays queued for the next Recv
				s.mu.Unlock()
				return Message{}, fmt.Errorf("%w: %d", ErrSlowConsumer, d)
			}
			m, notice := en.msg, en.notice
			*en = entry{}
			s.head = (s.head + 1) % len(s.buf)
			s.n--
			s.bytes -= len(m.Payload)
			if s.n > 0 || s.dropping > 0 {
				s.signal() // another Recv may take what remains
			}
			s.mu.Unlock()
			if notice != nil {
				return Message{}, notice
			}
			return m, nil
		}
		if d := s.dropping; d > 0 {
			s.dropping = 0
			s.mu.Unlock()
			return Message{}, fmt.Errorf("%w: %d", ErrSlowConsumer, d)
		}
		if err := s.err; err != nil {
			s.mu.Unlock()
			return Message{}, err
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-s.done:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

// Messages iterates over the subscription's messages until ctx is done or
// the subscription ends. It yields (message, nil) for each message, (zero,
// error wrapping ErrSlowConsumer) where messages were dropped, (zero,
// ErrPublisherLost) and (zero, ErrResubscribed) where the publisher was
// lost and admitted the subscription again, and finally (zero, ctx error
// or *RejectError) unless the subscription ended with Unsubscribe.
// Breaking out of the loop does not unsubscribe.
func (s *Subscription) Messages(ctx context.Context) iter.Seq2[Message, error] {
	return func(yield func(Message, error) bool) {
		for {
			m, err := s.Recv(ctx)
			switch {
			case err == nil || errors.Is(err, ErrSlowConsumer) || err == ErrPublisherLost || err == ErrResubscribed:
				if !yield(m, err) {
					return
				}
			case errors.Is(err, ErrUnsubscribed):
				return
			default:
				yield(m, err)
				return
			}
		}
	}
}

// Unsubscribe leaves the channel: the publisher is told (best effort) and
// Recv returns ErrUnsubscribed once the queue is drained. It is
// idempotent, and a no-op after the publisher ended the subscription.
func (s *Subscription) Unsubscribe() {
	e := s.e
	e.mu.Lock()
	active := e.forgetLocked(s)
	e.mu.Unlock()
	if active {
		_ = e.send(s.publisher, &message{typ: msgUnsubscribe, name: []byte(s.name)})
	}
	s.end(ErrUnsubscribed)
}

// Publisher returns the publisher's NodeID.
func (s *Subscription) Publisher() identity.NodeID { return s.publisher }

// Channel returns the channel name.
func (s *Subscription) Channel() string { return s.name }

// Done is closed when the subscription ends (its queue may still hold
// messages for Recv).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
