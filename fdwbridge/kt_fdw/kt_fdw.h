/*
 * kt_fdw.h
 *		Shared declarations of kt_fdw: the Kyoto Tycoon HTTP/TSV-RPC client,
 *		the per-backend connection cache and the FDW callbacks.
 */
#ifndef KT_FDW_H
#define KT_FDW_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#if PG_VERSION_NUM < 130000
#error "kt_fdw requires PostgreSQL 13 or later"
#endif
#if PG_VERSION_NUM >= 180000
#error "kt_fdw has not been ported to PostgreSQL 18 yet"
#endif

/* Limits (documented in README.md). */
#define KT_MAX_KEY_LEN		65535
#define KT_MAX_VALUE_LEN	(128 * 1024 * 1024)
#define KT_DEFAULT_HOST		"127.0.0.1"
#define KT_DEFAULT_PORT		1978
#define KT_DEFAULT_TIMEOUT	(-1)
#define KT_DEFAULT_BATCH	100
#define KT_MAX_BATCH		10000

/* Options of a server (plus the table's db / batch_size). */
typedef struct KtServerOpts
{
	char	   *host;
	int			port;
	int			timeout;		/* seconds, -1 = wait forever */
	bool		use_transactions;
	int			batch_size;
	char	   *db;				/* NULL = default database */
	int			sslmode;		/* KT_SSL_* */
	char	   *sslrootcert;	/* NULL = the system's CA store */
	char	   *sslcert;		/* client certificate, NULL = none */
	char	   *sslkey;
} KtServerOpts;

/* sslmode, as libpq's: no TLS; TLS unverified; the chain verified; and the name. */
#define KT_SSL_DISABLE		0
#define KT_SSL_REQUIRE		1
#define KT_SSL_VERIFY_CA	2
#define KT_SSL_VERIFY_FULL	3

/* One decoded TSV field of a response. */
typedef struct KtField
{
	char	   *name;
	int			namelen;
	char	   *value;
	int			valuelen;
} KtField;

/* One parsed RPC response. */
typedef struct KtResult
{
	int			status;			/* HTTP status code */
	int			nfields;
	KtField    *fields;
} KtResult;

/* A cached connection to one KT server for one user mapping. */
typedef struct KtConn KtConn;

/* kt_client.c: connections, requests, transactions */
extern KtConn *kt_get_connection(Oid serverid, Oid userid, bool for_access);
extern const KtServerOpts *kt_conn_opts(KtConn *conn);
extern uint64 kt_conn_new_cursor_id(KtConn *conn);
extern void kt_conn_cursor_opened(KtConn *conn);
extern void kt_conn_cursor_closed(KtConn *conn);
extern uint64 kt_conn_generation(KtConn *conn);
extern void kt_conn_note_write(KtConn *conn);
extern void kt_conn_out_of_step(KtConn *conn);

extern void kt_req_begin(KtConn *conn, const char *proc);
extern void kt_req_param(KtConn *conn, const char *name, int namelen,
						 const char *value, int valuelen);
extern void kt_req_param_str(KtConn *conn, const char *name, const char *value);
extern void kt_req_end(KtConn *conn);
extern KtResult *kt_exchange(KtConn *conn, int *nresults);
extern void kt_discard_requests(KtConn *conn);

extern const char *kt_result_get(const KtResult *res, const char *name, int *len);
extern const char *kt_result_error(const KtResult *res);
extern void kt_report_result(KtConn *conn, const char *proc, const KtResult *res,
							 int sqlstate);
extern void kt_parse_server_opts(Oid serverid, KtServerOpts *opts);

extern void kt_client_init(void);

/* kt_fdw.c */
extern bool kt_parse_bool_opt(const char *value, bool *result);
extern bool kt_parse_int_opt(const char *value, int *result);
extern bool kt_parse_sslmode(const char *value, int *result);

#endif							/* KT_FDW_H */
