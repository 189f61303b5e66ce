//go:build !linux

package netlab

import "errors"

// Do fails: network namespaces exist only on Linux, and New skips every
// test before a namespace could be made.
func (ns *NS) Do(f func() error) error {
	return errors.New("netlab: network namespaces need Linux")
}
