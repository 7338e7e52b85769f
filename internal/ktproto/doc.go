// Package ktproto holds the pure codecs of Kyoto Tycoon's wire protocols:
// the HTTP/1.x request reader and response writer, the TSV-RPC map codecs
// (form, TSV, colenc B/U/Q, output-encoding choice), KC's lenient number and
// date parsers, the binary protocol frames and KC's varnum.
//
// Nothing here does I/O beyond io.Reader/bufio.Reader and byte slices, so every
// parser can be fuzzed alone. Behaviour follows KT 0.9.56 as documented in the
// project's protocol reference; the recordings of the real server decide where
// the reference is unsure.
//
// Bug compatibility is deliberate: URLDecode drops raw bytes >= 0x80 like
// KC does on x86 (signed char), form and colenc decoding stop at NUL (C
// strings), request lines longer than 8191 bytes are split like KT's 8 KiB
// line buffer splits them, and a TSV colenc applies to the whole input map
// (query parameters included). Each such place cites the recording or KC
// code it follows.
//
// Binary frames: every magic byte and flag, per direction, with its byte
// layout, is in the wire table (wire.go).
package ktproto
