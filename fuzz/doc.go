// Package fuzz holds the fuzz targets for the transport's wire decoders
// (package mesh/wire: outer data header, handshake messages, cookie
// replies, inner frames, routed frames and handshake extensions) and for
// rpc frames. Each target's comment states
// the threat it covers and checks a round-trip property.
//
// The engines' codecs are fuzzed beside their code instead, because their
// targets also drive unexported state (a decoded announcement goes on
// through the capability engine's checks) or decode unexported frames:
//
//	identity      FuzzParseNodeID, FuzzDecodeToken, FuzzParsePEM (key files),
//	              FuzzDecodeCertificate, FuzzDecodeRevocation (membership)
//	dialaddr      FuzzParse                  (dial strings from configs and flags)
//	noise         FuzzReadMessage            (handshake messages into flynn/noise)
//	mesh/stream   FuzzDecodeFrame            (stream frames)
//	mesh/stream   FuzzMux                    (frame sequences into a Mux: no panic, exact budget accounting)
//	capability    FuzzDecodeAnnouncement, FuzzParseFilter
//	channel       FuzzDecode                 (subscribe/ack/publish messages)
//	nat           FuzzMessage                (build tag nat: punch and reflex frames)
//	daemon/task   FuzzWire                   (task submits, deliveries, replies)
//	daemon        FuzzWire                   (daemon deliveries, transfers, replies, images)
//	membership    FuzzDecodeMessage          (revocations and certificates members exchange)
//	mesh          FuzzPeerExt                (a handshake's extensions as admission reads them)
//
// .ci/fuzz runs every target in the module for a few seconds; run one
// longer with, for example:
//
//	go test -run '^$' -fuzz '^FuzzDataHeader$' -fuzztime 5m ./fuzz
//
// Inputs that once failed are kept under each package's testdata/fuzz.
package fuzz
