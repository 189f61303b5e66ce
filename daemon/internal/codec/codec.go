// Package codec holds the field encoder and decoder that the daemon
// runtime's and the task layer's messages are written with: varints,
// length-prefixed byte strings and fixed-size fields. The decoder is for
// hostile input: every count and length is checked against a bound before
// anything is allocated, the first failure sticks, and nothing panics on
// any input.
package codec

import (
	"encoding/binary"
	"fmt"
)

// Encoder appends fields to B.
type Encoder struct{ B []byte }

// Byte appends one byte.
func (e *Encoder) Byte(v byte) { e.B = append(e.B, v) }

// Uvarint appends an unsigned varint.
func (e *Encoder) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// Varint appends a zig-zag varint.
func (e *Encoder) Varint(v int64) { e.B = binary.AppendVarint(e.B, v) }

// Uint64 appends 8 bytes, big endian.
func (e *Encoder) Uint64(v uint64) { e.B = binary.BigEndian.AppendUint64(e.B, v) }

// Bytes appends a varint length and v.
func (e *Encoder) Bytes(v []byte) { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }

// String appends a varint length and v.
func (e *Encoder) String(v string) { e.Uvarint(uint64(len(v))); e.B = append(e.B, v...) }

// Fixed appends v as it is: a field whose size both sides know.
func (e *Encoder) Fixed(v []byte) { e.B = append(e.B, v...) }

// Bool appends 1 or 0.
func (e *Encoder) Bool(v bool) {
	if v {
		e.Byte(1)
	} else {
		e.Byte(0)
	}
}

// Decoder reads fields from a message. The first failure sticks in Err,
// wrapping the sentinel given to NewDecoder, and every later read returns
// zero values.
type Decoder struct {
	b         []byte
	err       error
	malformed error
}

// NewDecoder returns a decoder of b whose failures wrap malformed.
func NewDecoder(b []byte, malformed error) *Decoder {
	return &Decoder{b: b, malformed: malformed}
}

// Fail records a failure (the first one sticks) and stops decoding.
func (d *Decoder) Fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", d.malformed, fmt.Sprintf(format, args...))
	}
	d.b = nil
}

// Err returns the first failure, or nil.
func (d *Decoder) Err() error { return d.err }

// Len returns the number of bytes not yet read.
func (d *Decoder) Len() int { return len(d.b) }

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.b) < 1 {
		d.Fail("short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// Bool reads a byte that must be 0 or 1.
func (d *Decoder) Bool() bool {
	switch d.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.Fail("bad boolean")
	return false
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.Fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Varint reads a zig-zag varint.
func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.Fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Uint64 reads 8 bytes, big endian.
func (d *Decoder) Uint64() uint64 {
	b := d.Fixed(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Count reads a count of at most max things.
func (d *Decoder) Count(max int, what string) int {
	n := d.Uvarint()
	if n > uint64(max) {
		d.Fail("%d %s, at most %d", n, what, max)
		return 0
	}
	return int(n)
}

// Bytes reads a byte string of at most max bytes. The result aliases the
// input; an empty string is nil.
func (d *Decoder) Bytes(max int, what string) []byte {
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) || n > uint64(len(d.b)) {
		d.Fail("%s of %d bytes", what, n)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// String reads a string of at most max bytes.
func (d *Decoder) String(max int, what string) string { return string(d.Bytes(max, what)) }

// Fixed reads n bytes; the result aliases the input.
func (d *Decoder) Fixed(n int) []byte {
	if len(d.b) < n {
		d.Fail("short")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// Rest reads every byte left; the result aliases the input.
func (d *Decoder) Rest() []byte {
	v := d.b
	d.b = nil
	return v
}

// End returns the first failure, or a failure if bytes are left over.
func (d *Decoder) End() error {
	if d.err == nil && len(d.b) != 0 {
		d.Fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
