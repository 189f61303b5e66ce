package stream

import (
	"math/bits"
	"sync"
)

// chunk is a pooled fragment buffer. Its capacity is smallChunkSize,
// chunkSize or jumboChunkSize; the window accounting charges that
// capacity.
type chunk struct {
	b    []byte
	n    int    // bytes used, on the receive side
	have uint64 // receive side: splitBlock-byte blocks of b[:n] filled (see flagSplit)
}

// blockMask is the have mask of a complete n-byte fragment.
func blockMask(n int) uint64 {
	return 1<<((n+splitBlock-1)/splitBlock) - 1
}

// complete reports whether every block of a received fragment arrived.
func (c *chunk) complete() bool { return c.have == blockMask(c.n) }

var (
	smallChunkPool = sync.Pool{New: func() any { return &chunk{b: make([]byte, smallChunkSize)} }}
	chunkPool      = sync.Pool{New: func() any { return &chunk{b: make([]byte, chunkSize)} }}
	jumboChunkPool = sync.Pool{New: func() any { return &chunk{b: make([]byte, jumboChunkSize)} }}
)

// chunkCap is the capacity of the chunk getChunk(n) returns: what holding
// n bytes charges the window.
func chunkCap(n int) int {
	switch {
	case n <= smallChunkSize:
		return smallChunkSize
	case n <= chunkSize:
		return chunkSize
	}
	return jumboChunkSize
}

// getChunk returns a buffer of at least n bytes (n ≤ jumboChunkSize).
func getChunk(n int) *chunk {
	switch chunkCap(n) {
	case smallChunkSize:
		return smallChunkPool.Get().(*chunk)
	case chunkSize:
		return chunkPool.Get().(*chunk)
	}
	return jumboChunkPool.Get().(*chunk)
}

func putChunk(c *chunk) {
	switch cap(c.b) {
	case smallChunkSize:
		smallChunkPool.Put(c)
	case chunkSize:
		chunkPool.Put(c)
	default:
		jumboChunkPool.Put(c)
	}
}

// msgBuf is a pooled buffer for one received message, from a power-of-two
// size class.
type msgBuf struct {
	b []byte // len is the message length; cap is the size class
}

var msgPools [sizeClassMaxShift - sizeClassMinShift + 1]sync.Pool

// sizeClass returns the pool index for an n-byte buffer.
func sizeClass(n int) int {
	if n <= 1<<sizeClassMinShift {
		return 0
	}
	return bits.Len(uint(n-1)) - sizeClassMinShift
}

// getMsg returns a buffer of length n. n must not exceed
// 1<<sizeClassMaxShift (Config.withDefaults clamps MaxMessageSize to it).
func getMsg(n int) *msgBuf {
	c := sizeClass(n)
	m, _ := msgPools[c].Get().(*msgBuf)
	if m == nil {
		if m, _ = bareMsgs.Get().(*msgBuf); m == nil {
			m = new(msgBuf)
		}
		m.b = make([]byte, 0, 1<<(c+sizeClassMinShift))
	}
	m.b = m.b[:n]
	return m
}

// bareMsgs holds msgBufs whose buffer went to a caller (see giveMsg).
var bareMsgs sync.Pool

// giveMsg returns m's buffer for the caller to keep, and keeps m.
func giveMsg(m *msgBuf) []byte {
	b := m.b
	m.b = nil
	bareMsgs.Put(m)
	return b
}

func putMsg(m *msgBuf) {
	msgPools[sizeClass(cap(m.b))].Put(m)
}
