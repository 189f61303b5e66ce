// Package fuzz holds the fuzz targets for every netmesh decoder that reads
// network input. Each target's comment states the threat it covers. Run one
// with, for example:
//
//	go test -run '^$' -fuzz '^FuzzDataHeader$' -fuzztime 30s ./fuzz
//
// Interesting inputs found by fuzzing are committed under testdata/fuzz.
package fuzz
