package ktproto

// The wire table: every magic byte and flag of KT's binary protocol and of
// its replication, KT's own and ktd's extensions, in one place. The first
// byte of a binary frame says what it is, and its meaning depends on the
// direction: 0xB4 is play_script from a client, and "checked session
// accepted" from a ktd master to its replica.
//
// Layouts: u16/u32/u64 are big-endian; i64 is two's complement; "{...}" repeats.
//
// Client -> server (a request; the server answers with the same magic on
// success, MagicError otherwise; FlagNoReply asks for no answer):
//
//	B8 set_bulk     B8 u32 flags u32 rnum {u16 dbidx u32 ksiz u32 vsiz i64 xt key value}
//	                answer: B8 u32 hits
//	B9 remove_bulk  B9 u32 flags u32 rnum {u16 dbidx u32 ksiz key}
//	                answer: B9 u32 hits
//	BA get_bulk     BA u32 flags u32 rnum {u16 dbidx u32 ksiz key}
//	                answer: BA u32 hits {u16 dbidx u32 ksiz u32 vsiz i64 xt key value}
//	B4 play_script  B4 u32 flags u32 nsiz u32 rnum name {u32 ksiz u32 vsiz key value}
//	                answer: B4 u32 rnum {u32 ksiz u32 vsiz key value}
//	B1 replication  B1 u32 flags u64 ts u16 sid (a slave asking for the log after ts)
//
// Server -> client: BF error (the request failed; no more detail).
//
// Master -> slave, after a replication request (KT's stream, plain):
//
//	B1 accepted, then data frames: B1 u64 ts u32 size message (an update-log
//	   message: see the replication package)
//	B0 idle frame: B0 u64 ts (nothing new up to ts); the slave answers B1
//
// ktd's extensions, sent only to a slave that set one of ktd's flags (a real
// KT peer never sets them, and a KT master ignores them):
//
//	B4 checked session accepted (FlagChecksum): every later frame carries a
//	   CRC-32C of its bytes
//	B2 bootstrap: B2 u64 ts u16 master sid; snapshot records follow, then the
//	   stream from ts
//	B3 snapshot record: B3 u16 dbid u32 ksiz u32 vsiz key stored-value;
//	   B3 ffff ends the snapshot
//	B5 digest frame (FlagVerify): a database's digest at a cut of the log
//	B6 cut frame (FlagDeferredDigest): where digests sent later apply
const (
	MagicNop         = 0xB0 // master -> slave: idle frame
	MagicReplication = 0xB1 // slave -> master: replication request; master -> slave: accepted, data frames
	MagicBootstrap   = 0xB2 // master -> slave (ktd): a snapshot starts
	MagicSnapshot    = 0xB3 // master -> slave (ktd): one snapshot record, or its end
	MagicPlayScript  = 0xB4 // client -> server: play_script request and its answer
	MagicChecked     = 0xB4 // master -> slave (ktd): checked session accepted
	MagicDigest      = 0xB5 // master -> slave (ktd): digest frame
	MagicCut         = 0xB6 // master -> slave (ktd): cut frame
	MagicSetBulk     = 0xB8 // client -> server: set_bulk request and its answer
	MagicRemoveBulk  = 0xB9 // client -> server: remove_bulk request and its answer
	MagicGetBulk     = 0xBA // client -> server: get_bulk request and its answer
	MagicError       = 0xBF // server -> client: the request failed
)

// Flags of a bulk or play_script request (u32 after the magic).
const (
	FlagNoReply = 0x01 // the server sends no answer
)

// Flags of a replication request (u32 after B1).
const (
	FlagWhiteSID       = 0x01 // KT: sid is the only server id to send (else: every id but sid)
	FlagGapAware       = 0x02 // ktd: a position older than the retained log gets a snapshot, not a silent gap
	FlagBootstrap      = 0x04 // ktd: start from a snapshot whatever the position (a new replica)
	FlagChecksum       = 0x08 // ktd: a checked session (MagicChecked, CRC-32C frames)
	FlagVerify         = 0x10 // ktd, with FlagChecksum: digest frames now and then
	FlagDeferredDigest = 0x20 // ktd, with FlagVerify: a cut frame first, its digests later
	FlagVisible        = 0x40 // ktd: records once visible, before a sync made them durable (observers, never slaves)
)
