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
// Binary frames (all integers big-endian):
//
//	0xB8 set_bulk     req: B8 u32 flags u32 rnum {u16 dbidx u32 ksiz u32 vsiz i64 xt key value}
//	                  rsp: B8 u32 hits
//	0xB9 remove_bulk  req: B9 u32 flags u32 rnum {u16 dbidx u32 ksiz key}
//	                  rsp: B9 u32 hits
//	0xBA get_bulk     req: BA u32 flags u32 rnum {u16 dbidx u32 ksiz key}
//	                  rsp: BA u32 hits {u16 dbidx u32 ksiz u32 vsiz i64 xt key value}
//	0xB4 play_script  req: B4 u32 flags u32 nsiz u32 rnum name {u32 ksiz u32 vsiz key value}
//	                  rsp: B4 u32 rnum {u32 ksiz u32 vsiz key value}
//	0xB1 replication  req: B1 u32 flags u64 ts u16 sid
//	0xB0 nop          B0 u64 ts (server to slave; slave answers one byte B1)
//	0xBF error        BF (no payload)
package ktproto
