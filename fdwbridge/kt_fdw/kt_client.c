/*
 * kt_client.c
 *		A small HTTP/1.1 keep-alive client for Kyoto Tycoon's TSV-RPC, the
 *		per-backend connection cache and the transaction callbacks of kt_fdw.
 *
 * Requests are queued with kt_req_begin/kt_req_param/kt_req_end and sent
 * together by kt_exchange, which writes them back to back (HTTP pipelining)
 * and then reads one response per request.  Every wait on the socket goes
 * through WaitLatchOrSocket, so query cancellation, statement_timeout and
 * postmaster death are honoured while talking to KT.
 */
#include "postgres.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "access/xact.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 140000
#include "utils/wait_event.h"
#else
#include "pgstat.h"
#endif

#include "kt_fdw.h"

/* Longest header section of a response we accept. */
#define KT_MAX_HEADER_LEN	(64 * 1024)
/*
 * Largest response body we accept: the bytes of all responses of one
 * exchange must fit in one buffer, which palloc limits to 1 GB.  KT's
 * largest value (128 MiB) takes about 171 MiB in base64.
 */
#define KT_MAX_BODY_LEN		(512 * 1024 * 1024)
/*
 * Most fields in one response.  kt_fdw asks for at most 1000 records per
 * get_bulk; the cap bounds the memory of a response of tiny fields.
 */
#define KT_MAX_FIELDS		100000
/* Longest part of a KT error message put into an ERROR. */
#define KT_MAX_ERRMSG_LEN	1024
/* Buffers larger than this are given back after an exchange. */
#define KT_KEEP_BUF_LEN		(1024 * 1024)
/* Cap on the wait for cleanup requests sent while aborting. */
#define KT_ABORT_TIMEOUT	30

struct KtConn
{
	Oid			umid;			/* hash key: OID of the user mapping */
	Oid			serverid;
	char	   *servername;		/* in TopMemoryContext */
	KtServerOpts opts;			/* strings in TopMemoryContext */
	bool		opts_valid;
	uint32		server_hash;	/* syscache hash values for invalidation */
	uint32		mapping_hash;
	bool		invalidated;

	pgsocket	sock;
	SSL		   *ssl;			/* TLS session on sock (sslmode), or NULL */
	uint64		generation;		/* bumped whenever the socket is closed */
	bool		reused;			/* at least one exchange completed on sock */
	bool		busy;			/* an exchange is in progress or was cut */
	StringInfoData out;			/* queued requests */
	StringInfoData body;		/* body of the request being built */
	StringInfoData in;			/* received, not yet consumed bytes */
	int			inpos;
	int			nqueued;
	bool		begin_queued;	/* first queued request is the KT begin */
	const char *cur_proc;
	int			live_cursors;
	uint64		next_cursor;

	/* transaction state for the current PostgreSQL transaction */
	bool		touched;		/* accessed in this transaction */
	int			xact_level;		/* nest level owning the KT transaction */
	bool		begin_pending;	/* begin must be sent with the next exchange */
	bool		xact_open;		/* KT acknowledged the begin */
	int			write_level;	/* deepest subxact level above xact_level
								 * that wrote, 0 if none */
	char	   *doomed;			/* why this transaction cannot commit */
};

static HTAB *kt_conns = NULL;
static bool kt_callbacks_done = false;

static void kt_disconnect(KtConn *conn);
static bool kt_exchange_soft(KtConn *conn, int timeout, KtResult **results,
							 char **emsg);

/* ------------------------------------------------------------------------
 * Codecs
 * ------------------------------------------------------------------------
 */
static const char kt_b64chars[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
kt_b64_append(StringInfo buf, const char *src, int len)
{
	const unsigned char *s = (const unsigned char *) src;
	char	   *d;
	int			i;

	enlargeStringInfo(buf, (len + 2) / 3 * 4);
	d = buf->data + buf->len;
	for (i = 0; i + 2 < len; i += 3)
	{
		*d++ = kt_b64chars[s[i] >> 2];
		*d++ = kt_b64chars[((s[i] & 0x03) << 4) | (s[i + 1] >> 4)];
		*d++ = kt_b64chars[((s[i + 1] & 0x0f) << 2) | (s[i + 2] >> 6)];
		*d++ = kt_b64chars[s[i + 2] & 0x3f];
	}
	if (len - i == 1)
	{
		*d++ = kt_b64chars[s[i] >> 2];
		*d++ = kt_b64chars[(s[i] & 0x03) << 4];
		*d++ = '=';
		*d++ = '=';
	}
	else if (len - i == 2)
	{
		*d++ = kt_b64chars[s[i] >> 2];
		*d++ = kt_b64chars[((s[i] & 0x03) << 4) | (s[i + 1] >> 4)];
		*d++ = kt_b64chars[(s[i + 1] & 0x0f) << 2];
		*d++ = '=';
	}
	buf->len = d - buf->data;
	buf->data[buf->len] = '\0';
}

static int
kt_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode base64 like KC: skip foreign characters, stop after padding. */
static int
kt_b64_decode(const char *src, int len, char *dst)
{
	int			out = 0;
	int			acc = 0;
	int			nbits = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) src[i];
		int			v;

		if (c == '=')
			break;
		v = kt_b64_value(c);
		if (v < 0)
			continue;
		acc = (acc << 6) | v;
		nbits += 6;
		if (nbits >= 8)
		{
			nbits -= 8;
			dst[out++] = (char) ((acc >> nbits) & 0xff);
		}
	}
	return out;
}

static int
kt_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 0;
}

static int
kt_url_decode(const char *src, int len, char *dst)
{
	int			out = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (c == '%')
		{
			if (i + 2 >= len)
				break;
			dst[out++] = (char) (kt_hex_value(src[i + 1]) * 16 +
								 kt_hex_value(src[i + 2]));
			i += 2;
		}
		else if (c == '+')
			dst[out++] = ' ';
		else
			dst[out++] = (char) c;
	}
	return out;
}

static int
kt_qp_decode(const char *src, int len, char *dst)
{
	int			out = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) src[i];

		if (c == '=')
		{
			if (i + 1 < len && src[i + 1] == '\n')
				i += 1;
			else if (i + 2 < len && src[i + 1] == '\r' && src[i + 2] == '\n')
				i += 2;
			else if (i + 2 < len)
			{
				dst[out++] = (char) (kt_hex_value(src[i + 1]) * 16 +
									 kt_hex_value(src[i + 2]));
				i += 2;
			}
			else
				break;
		}
		else
			dst[out++] = (char) c;
	}
	return out;
}

/* Decode one TSV column into fresh palloc'd, NUL-terminated memory. */
static char *
kt_decode_column(const char *src, int len, char colenc, int *outlen)
{
	char	   *dst = palloc(len + 1);
	int			n;

	switch (colenc)
	{
		case 'B':
			n = kt_b64_decode(src, len, dst);
			break;
		case 'U':
			n = kt_url_decode(src, len, dst);
			break;
		case 'Q':
			n = kt_qp_decode(src, len, dst);
			break;
		default:
			memcpy(dst, src, len);
			n = len;
			break;
	}
	dst[n] = '\0';
	*outlen = n;
	return dst;
}

/* Parse a TSV body into res; false when it has too many fields. */
static bool
kt_parse_tsv(const char *body, int len, char colenc, KtResult *res)
{
	int			cap = 4;
	int			pos = 0;

	res->nfields = 0;
	res->fields = palloc(sizeof(KtField) * cap);
	while (pos < len)
	{
		const char *line = body + pos;
		const char *nl = memchr(line, '\n', len - pos);
		int			linelen = nl ? (int) (nl - line) : len - pos;
		const char *tab;

		pos += linelen + 1;
		if (linelen > 0 && line[linelen - 1] == '\r')
			linelen--;
		tab = memchr(line, '\t', linelen);
		if (tab == NULL)
			continue;
		if (res->nfields == KT_MAX_FIELDS)
			return false;
		if (res->nfields == cap)
		{
			cap *= 2;
			res->fields = repalloc(res->fields, sizeof(KtField) * cap);
		}
		res->fields[res->nfields].name =
			kt_decode_column(line, tab - line, colenc,
							 &res->fields[res->nfields].namelen);
		res->fields[res->nfields].value =
			kt_decode_column(tab + 1, linelen - (tab - line) - 1, colenc,
							 &res->fields[res->nfields].valuelen);
		res->nfields++;
	}
	return true;
}

const char *
kt_result_get(const KtResult *res, const char *name, int *len)
{
	int			namelen = strlen(name);
	int			i;

	for (i = 0; i < res->nfields; i++)
	{
		if (res->fields[i].namelen == namelen &&
			memcmp(res->fields[i].name, name, namelen) == 0)
		{
			if (len)
				*len = res->fields[i].valuelen;
			return res->fields[i].value;
		}
	}
	return NULL;
}

/*
 * The KT error message of a response, fit for an ERROR: control bytes and,
 * unless it is valid in the database encoding, bytes >= 0x80 are shown as
 * \xNN, and it is cut after KT_MAX_ERRMSG_LEN bytes.
 */
const char *
kt_result_error(const KtResult *res)
{
	int			len;
	const char *msg = kt_result_get(res, "ERROR", &len);
	bool		valid;
	int			keep;
	int			i;
	StringInfoData buf;

	if (msg == NULL)
		return psprintf("HTTP status %d", res->status);
	valid = pg_verifymbstr(msg, len, true);
	keep = len;
	if (keep > KT_MAX_ERRMSG_LEN)
		keep = valid ? pg_mbcliplen(msg, len, KT_MAX_ERRMSG_LEN) : KT_MAX_ERRMSG_LEN;
	initStringInfo(&buf);
	for (i = 0; i < keep; i++)
	{
		unsigned char c = (unsigned char) msg[i];

		if (c < 0x20 || c == 0x7f || (!valid && c >= 0x80))
			appendStringInfo(&buf, "\\x%02x", c);
		else
			appendStringInfoChar(&buf, (char) c);
	}
	if (keep < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

void
kt_report_result(KtConn *conn, const char *proc, const KtResult *res,
				 int sqlstate)
{
	ereport(ERROR,
			(errcode(sqlstate ? sqlstate : ERRCODE_FDW_ERROR),
			 errmsg("KT %s failed: %s", proc, kt_result_error(res)),
			 errdetail("KT server \"%s\" answered with HTTP status %d.",
					   conn->servername, res->status)));
}

/* ------------------------------------------------------------------------
 * Socket I/O
 * ------------------------------------------------------------------------
 */
static TimestampTz
kt_deadline(int timeout)
{
	if (timeout < 0)
		return 0;
	return GetCurrentTimestamp() + (TimestampTz) timeout * USECS_PER_SEC;
}

/*
 * Wait until one of the socket events happens.  Returns the events that
 * occurred, or 0 when the deadline (0 = none) passed.  Interrupts are
 * processed while waiting, so this may throw.
 */
static int
kt_wait(KtConn *conn, int events, TimestampTz deadline)
{
	for (;;)
	{
		int			wl = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | events;
		long		timeout_ms = -1;
		int			rc;

		if (deadline != 0)
		{
			TimestampTz now = GetCurrentTimestamp();

			if (now >= deadline)
				return 0;
			timeout_ms = (long) ((deadline - now + 999) / 1000);
			wl |= WL_TIMEOUT;
		}
		rc = WaitLatchOrSocket(MyLatch, wl, conn->sock, timeout_ms,
							   PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			return rc & events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE);
	}
}

/* ------------------------------------------------------------------------
 * TLS (sslmode): OpenSSL on the non-blocking socket, waits through kt_wait
 * ------------------------------------------------------------------------
 */

/* The first error of OpenSSL's queue, or what, as a palloc'd message. */
static char *
kt_tls_error(const char *what)
{
	unsigned long e = ERR_get_error();
	char		buf[256];

	ERR_clear_error();
	if (e == 0)
		return psprintf("%s", what);
	ERR_error_string_n(e, buf, sizeof(buf));
	return psprintf("%s: %s", what, buf);
}

static void
kt_tls_free(KtConn *conn)
{
	if (conn->ssl != NULL)
	{
		SSL_free(conn->ssl);
		conn->ssl = NULL;
	}
}

/* Whether host is an IPv4 or IPv6 literal. */
static bool
kt_is_ip_literal(const char *host)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/*
 * Start TLS on the connected socket: the context the server options describe
 * (sslrootcert or the system's CAs for verify-ca/verify-full; sslcert/sslkey
 * presented when given), the server's name checked with verify-full, then the
 * handshake, waiting through kt_wait so that interrupts and the deadline work.
 */
static bool
kt_tls_start(KtConn *conn, TimestampTz deadline, char **emsg)
{
	const KtServerOpts *o = &conn->opts;
	SSL_CTX    *ctx;
	SSL		   *ssl;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
	{
		*emsg = kt_tls_error("could not create a TLS context");
		return false;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (o->sslmode >= KT_SSL_VERIFY_CA)
	{
		int			ok = o->sslrootcert != NULL
			? SSL_CTX_load_verify_locations(ctx, o->sslrootcert, NULL)
			: SSL_CTX_set_default_verify_paths(ctx);

		if (ok != 1)
		{
			*emsg = o->sslrootcert != NULL
				? kt_tls_error(psprintf("could not read root certificate file \"%s\"", o->sslrootcert))
				: kt_tls_error("could not load the system's root certificates");
			SSL_CTX_free(ctx);
			return false;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if ((o->sslcert == NULL) != (o->sslkey == NULL))
	{
		*emsg = pstrdup("options \"sslcert\" and \"sslkey\" go together");
		SSL_CTX_free(ctx);
		return false;
	}
	if (o->sslcert != NULL &&
		(SSL_CTX_use_certificate_chain_file(ctx, o->sslcert) != 1 ||
		 SSL_CTX_use_PrivateKey_file(ctx, o->sslkey, SSL_FILETYPE_PEM) != 1 ||
		 SSL_CTX_check_private_key(ctx) != 1))
	{
		*emsg = kt_tls_error(psprintf("could not load client certificate \"%s\" and key \"%s\"",
									  o->sslcert, o->sslkey));
		SSL_CTX_free(ctx);
		return false;
	}
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);			/* the session keeps its own reference */
	if (ssl == NULL || SSL_set_fd(ssl, conn->sock) != 1)
	{
		*emsg = kt_tls_error("could not create a TLS session");
		if (ssl)
			SSL_free(ssl);
		return false;
	}
	conn->ssl = ssl;
	SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (!kt_is_ip_literal(o->host))
		SSL_set_tlsext_host_name(ssl, o->host);
	if (o->sslmode == KT_SSL_VERIFY_FULL)
	{
		int			ok = kt_is_ip_literal(o->host)
			? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), o->host)
			: SSL_set1_host(ssl, o->host);

		if (ok != 1)
		{
			*emsg = kt_tls_error("could not set the name to verify");
			return false;
		}
	}
	for (;;)
	{
		int			r;
		int			events;

		ERR_clear_error();
		r = SSL_connect(ssl);
		if (r == 1)
			return true;
		switch (SSL_get_error(ssl, r))
		{
			case SSL_ERROR_WANT_READ:
				events = WL_SOCKET_READABLE;
				break;
			case SSL_ERROR_WANT_WRITE:
				events = WL_SOCKET_WRITEABLE;
				break;
			default:
				{
					long		vr = SSL_get_verify_result(ssl);

					if (vr != X509_V_OK)
						*emsg = psprintf("TLS handshake with KT server \"%s\" at %s:%d failed: certificate verify failed: %s",
										 conn->servername, o->host, o->port,
										 X509_verify_cert_error_string(vr));
					else
						*emsg = kt_tls_error(psprintf("TLS handshake with KT server \"%s\" at %s:%d failed",
													  conn->servername, o->host, o->port));
					return false;
				}
		}
		PG_TRY();
		{
			r = kt_wait(conn, events, deadline);
		}
		PG_CATCH();
		{
			kt_tls_free(conn);
			close(conn->sock);
			conn->sock = PGINVALID_SOCKET;
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (r == 0)
		{
			*emsg = pstrdup("timeout expired during the TLS handshake with the KT server");
			return false;
		}
	}
}

static bool
kt_connect(KtConn *conn, int timeout, char **emsg)
{
	struct addrinfo hints;
	struct addrinfo *addrs = NULL;
	struct addrinfo *ai;
	char		portstr[16];
	int			rc;
	const char *lasterr = "no address";
	TimestampTz deadline = kt_deadline(timeout);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(portstr, sizeof(portstr), "%d", conn->opts.port);
	rc = getaddrinfo(conn->opts.host, portstr, &hints, &addrs);
	if (rc != 0)
	{
		*emsg = psprintf("could not resolve KT host \"%s\": %s",
						   conn->opts.host, gai_strerror(rc));
		return false;
	}

	for (ai = addrs; ai != NULL; ai = ai->ai_next)
	{
		pgsocket	s = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		int			one = 1;
		int			flags;

		if (s == PGINVALID_SOCKET)
		{
			lasterr = strerror(errno);
			continue;
		}
		flags = fcntl(s, F_GETFL, 0);
		if (flags < 0 || fcntl(s, F_SETFL, flags | O_NONBLOCK) < 0 ||
			fcntl(s, F_SETFD, FD_CLOEXEC) < 0)
		{
			lasterr = strerror(errno);
			close(s);
			continue;
		}
		(void) setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

		conn->sock = s;
		if (connect(s, ai->ai_addr, ai->ai_addrlen) < 0)
		{
			int			soerr = 0;
			socklen_t	soerrlen = sizeof(soerr);

			if (errno != EINPROGRESS && errno != EINTR)
			{
				lasterr = strerror(errno);
				conn->sock = PGINVALID_SOCKET;
				close(s);
				continue;
			}
			PG_TRY();
			{
				rc = kt_wait(conn, WL_SOCKET_WRITEABLE, deadline);
			}
			PG_CATCH();
			{
				conn->sock = PGINVALID_SOCKET;
				close(s);
				freeaddrinfo(addrs);
				PG_RE_THROW();
			}
			PG_END_TRY();
			if (rc == 0)
			{
				lasterr = "timeout expired";
				conn->sock = PGINVALID_SOCKET;
				close(s);
				break;
			}
			if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &soerrlen) < 0)
				soerr = errno;
			if (soerr != 0)
			{
				lasterr = strerror(soerr);
				conn->sock = PGINVALID_SOCKET;
				close(s);
				continue;
			}
		}
		freeaddrinfo(addrs);
		conn->reused = false;
		conn->in.len = 0;
		conn->inpos = 0;
		if (conn->opts.sslmode != KT_SSL_DISABLE && !kt_tls_start(conn, deadline, emsg))
		{
			kt_tls_free(conn);
			close(conn->sock);
			conn->sock = PGINVALID_SOCKET;
			return false;
		}
		return true;
	}
	freeaddrinfo(addrs);
	*emsg = psprintf("could not connect to KT server \"%s\" at %s:%d: %s",
					   conn->servername, conn->opts.host, conn->opts.port,
					   lasterr);
	return false;
}

/*
 * kt_recv_some over TLS: read every complete record OpenSSL can decrypt, so
 * that nothing stays buffered inside it while the caller waits on the socket.
 */
static bool
kt_tls_recv(KtConn *conn, char **emsg)
{
	bool		got = false;

	for (;;)
	{
		int			n;

		if ((Size) conn->in.len + 65536 + 1 >= MaxAllocSize)
		{
			*emsg = pstrdup("invalid response from KT server: too much data");
			return false;
		}
		enlargeStringInfo(&conn->in, 65536);
		ERR_clear_error();
		n = SSL_read(conn->ssl, conn->in.data + conn->in.len,
					 conn->in.maxlen - conn->in.len - 1);
		if (n > 0)
		{
			conn->in.len += n;
			conn->in.data[conn->in.len] = '\0';
			got = true;
			continue;
		}
		switch (SSL_get_error(conn->ssl, n))
		{
			case SSL_ERROR_WANT_READ:
			case SSL_ERROR_WANT_WRITE:
				return true;
			case SSL_ERROR_ZERO_RETURN:
				if (got)
					return true;	/* EOF is reported by the next call */
				*emsg = pstrdup("KT server closed the connection unexpectedly");
				return false;
			case SSL_ERROR_SYSCALL:
				if (errno == EINTR)
					continue;
				if (got)
					return true;
				*emsg = errno != 0
					? psprintf("could not receive from KT server: %s", strerror(errno))
					: pstrdup("KT server closed the connection unexpectedly");
				return false;
			default:
				if (got)
					return true;
				*emsg = kt_tls_error("could not receive from KT server over TLS");
				return false;
		}
	}
}

/* Read what is available into conn->in; false on EOF or error. */
static bool
kt_recv_some(KtConn *conn, char **emsg)
{
	for (;;)
	{
		ssize_t		n;

		/* only a server sending what nobody asked for gets here */
		if ((Size) conn->in.len + 65536 + 1 >= MaxAllocSize)
		{
			*emsg = pstrdup("invalid response from KT server: too much data");
			return false;
		}
		enlargeStringInfo(&conn->in, 65536);
		if (conn->ssl != NULL)
			return kt_tls_recv(conn, emsg);
		n = recv(conn->sock, conn->in.data + conn->in.len,
				 conn->in.maxlen - conn->in.len - 1, 0);
		if (n > 0)
		{
			conn->in.len += n;
			conn->in.data[conn->in.len] = '\0';
			return true;
		}
		if (n == 0)
		{
			*emsg = pstrdup("KT server closed the connection unexpectedly");
			return false;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return true;
		*emsg = psprintf("could not receive from KT server: %s",
						   strerror(errno));
		return false;
	}
}

/* Send all queued bytes, reading responses meanwhile to avoid deadlock. */
static bool
kt_send_all(KtConn *conn, TimestampTz deadline, char **emsg)
{
	int			sent = 0;

	while (sent < conn->out.len)
	{
		ssize_t		n;
		int			rc;
		int			flags = 0;

#ifdef MSG_NOSIGNAL
		flags |= MSG_NOSIGNAL;
#endif
		if (conn->ssl != NULL)
		{
			int			e;

			ERR_clear_error();
			n = SSL_write(conn->ssl, conn->out.data + sent, conn->out.len - sent);
			if (n > 0)
			{
				sent += n;
				continue;
			}
			e = SSL_get_error(conn->ssl, (int) n);
			if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
			{
				*emsg = kt_tls_error("could not send to KT server over TLS");
				return false;
			}
			errno = EAGAIN;
			n = -1;
		}
		else
			n = send(conn->sock, conn->out.data + sent, conn->out.len - sent, flags);
		if (n > 0)
		{
			sent += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		{
			*emsg = psprintf("could not send to KT server: %s",
							   strerror(errno));
			return false;
		}
		rc = kt_wait(conn, WL_SOCKET_WRITEABLE | WL_SOCKET_READABLE, deadline);
		if (rc == 0)
		{
			*emsg = pstrdup("timeout expired while sending to KT server");
			return false;
		}
		if ((rc & WL_SOCKET_READABLE) && !kt_recv_some(conn, emsg))
			return false;
	}
	return true;
}

static int
kt_find_header_end(const char *data, int from, int len)
{
	int			i;

	for (i = from; i + 3 < len; i++)
	{
		if (data[i] == '\r' && data[i + 1] == '\n' &&
			data[i + 2] == '\r' && data[i + 3] == '\n')
			return i;
	}
	return -1;
}

static bool
kt_header_is(const char *line, int linelen, const char *name, const char **value,
			 int *valuelen)
{
	int			nlen = strlen(name);

	if (linelen <= nlen || pg_strncasecmp(line, name, nlen) != 0 ||
		line[nlen] != ':')
		return false;
	line += nlen + 1;
	linelen -= nlen + 1;
	while (linelen > 0 && (*line == ' ' || *line == '\t'))
	{
		line++;
		linelen--;
	}
	*value = line;
	*valuelen = linelen;
	return true;
}

/*
 * Read one response.  *closing is set when the server announced that it
 * closes the connection.
 */
static bool
kt_read_response(KtConn *conn, KtResult *res, TimestampTz deadline,
				 bool *closing, char **emsg)
{
	int			hdrend = -1;
	int			scanfrom = conn->inpos;
	int			clen = -1;
	char		colenc = 0;
	const char *p;
	const char *end;
	int			bodystart;

	for (;;)
	{
		hdrend = kt_find_header_end(conn->in.data, scanfrom, conn->in.len);
		if (hdrend >= 0)
			break;
		if (conn->in.len - conn->inpos > KT_MAX_HEADER_LEN)
		{
			*emsg = pstrdup("invalid response from KT server: header too long");
			return false;
		}
		scanfrom = Max(conn->inpos, conn->in.len - 3);
		if (kt_wait(conn, WL_SOCKET_READABLE, deadline) == 0)
		{
			*emsg = pstrdup("timeout expired while waiting for KT server");
			return false;
		}
		if (!kt_recv_some(conn, emsg))
			return false;
	}

	/* status line: HTTP/1.x, a space, three digits, then a space or CRLF */
	p = conn->in.data + conn->inpos;
	end = conn->in.data + hdrend;
	if (end - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 ||
		(p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
		!isdigit((unsigned char) p[9]) || !isdigit((unsigned char) p[10]) ||
		!isdigit((unsigned char) p[11]) ||
		(end - p > 12 && p[12] != ' ' && p[12] != '\r'))
	{
		*emsg = pstrdup("invalid response from KT server: bad status line");
		return false;
	}
	res->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	/* HTTP/1.0 closes after the response unless it says keep-alive */
	*closing = (p[7] == '0');
	p = memchr(p, '\n', end - p);
	while (p != NULL && p < end)
	{
		const char *line = p + 1;
		const char *nl = memchr(line, '\n', end - line);
		int			linelen = (nl ? nl : end) - line;
		const char *v;
		int			vlen;

		if (linelen > 0 && line[linelen - 1] == '\r')
			linelen--;
		if (kt_header_is(line, linelen, "content-length", &v, &vlen))
		{
			int64		n = 0;
			int			i;

			while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
				vlen--;
			for (i = 0; i < vlen && isdigit((unsigned char) v[i]); i++)
			{
				if (n <= KT_MAX_BODY_LEN)
					n = n * 10 + (v[i] - '0');
			}
			if (vlen == 0 || i < vlen || (clen >= 0 && clen != n))
			{
				*emsg = pstrdup("invalid response from KT server: bad Content-Length");
				return false;
			}
			if (n > KT_MAX_BODY_LEN)
			{
				*emsg = psprintf("invalid response from KT server: the body is larger than kt_fdw's limit of %d MB",
								 KT_MAX_BODY_LEN / (1024 * 1024));
				return false;
			}
			clen = (int) n;
		}
		else if (kt_header_is(line, linelen, "transfer-encoding", &v, &vlen))
		{
			/* KT never sends it, and kt_fdw does not decode it */
			*emsg = pstrdup("invalid response from KT server: Transfer-Encoding is not supported");
			return false;
		}
		else if (kt_header_is(line, linelen, "content-type", &v, &vlen))
		{
			int			i;

			for (i = 0; i + 7 < vlen; i++)
			{
				if (pg_strncasecmp(v + i, "colenc=", 7) == 0)
				{
					const char *c = v + i + 7;

					if (c < v + vlen && *c == '"')
						c++;
					if (c < v + vlen)
						colenc = pg_toupper((unsigned char) *c);
					break;
				}
			}
		}
		else if (kt_header_is(line, linelen, "connection", &v, &vlen))
		{
			if (vlen == 5 && pg_strncasecmp(v, "close", 5) == 0)
				*closing = true;
			else if (vlen == 10 && pg_strncasecmp(v, "keep-alive", 10) == 0)
				*closing = false;
		}
		p = nl;
	}
	if (clen < 0)
	{
		*emsg = pstrdup("invalid response from KT server: no Content-Length");
		return false;
	}
	if (colenc != 0 && colenc != 'B' && colenc != 'U' && colenc != 'Q')
	{
		*emsg = pstrdup("invalid response from KT server: unknown colenc");
		return false;
	}
	bodystart = hdrend + 4;
	if ((Size) bodystart + clen + 65536 >= MaxAllocSize)
	{
		*emsg = psprintf("invalid response from KT server: the responses of one exchange exceed kt_fdw's limit of %d MB",
						 (int) (MaxAllocSize / (1024 * 1024)));
		return false;
	}
	while (conn->in.len - bodystart < clen)
	{
		if (kt_wait(conn, WL_SOCKET_READABLE, deadline) == 0)
		{
			*emsg = pstrdup("timeout expired while waiting for KT server");
			return false;
		}
		if (!kt_recv_some(conn, emsg))
			return false;
	}
	if (!kt_parse_tsv(conn->in.data + bodystart, clen, colenc, res))
	{
		*emsg = psprintf("invalid response from KT server: more than %d fields",
						 KT_MAX_FIELDS);
		return false;
	}
	conn->inpos = bodystart + clen;
	return true;
}

static void
kt_reset_buffer(StringInfo buf)
{
	if (buf->maxlen > KT_KEEP_BUF_LEN)
	{
		pfree(buf->data);
		buf->data = MemoryContextAlloc(TopMemoryContext, 1024);
		buf->maxlen = 1024;
	}
	buf->len = 0;
	buf->data[0] = '\0';
}

static void
kt_disconnect(KtConn *conn)
{
	kt_tls_free(conn);
	if (conn->sock != PGINVALID_SOCKET)
	{
		close(conn->sock);
		conn->sock = PGINVALID_SOCKET;
	}
	conn->generation++;
	conn->live_cursors = 0;
	conn->reused = false;
	conn->busy = false;
	conn->in.len = 0;
	conn->inpos = 0;
	/* closing the connection discards an open KT transaction */
	conn->xact_open = false;
}

void
kt_discard_requests(KtConn *conn)
{
	kt_reset_buffer(&conn->out);
	kt_reset_buffer(&conn->body);
	conn->nqueued = 0;
	if (conn->begin_queued)
	{
		/* the begin was not sent: send it with the next exchange */
		conn->begin_queued = false;
		conn->begin_pending = true;
	}
}

/* ------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------
 */
static void
kt_queue_simple(KtConn *conn, const char *proc, const char *name,
				const char *value)
{
	kt_req_begin(conn, proc);
	kt_req_param_str(conn, name, value);
	kt_req_end(conn);
}

void
kt_req_begin(KtConn *conn, const char *proc)
{
	if (conn->nqueued == 0 && conn->begin_pending)
	{
		conn->begin_pending = false;
		conn->begin_queued = true;
		conn->cur_proc = "play_script";
		resetStringInfo(&conn->body);
		kt_req_param_str(conn, "name", "ktfdwbegintransaction");
		conn->cur_proc = "play_script";
		kt_req_end(conn);
	}
	conn->cur_proc = proc;
	resetStringInfo(&conn->body);
}

void
kt_req_param(KtConn *conn, const char *name, int namelen,
			 const char *value, int valuelen)
{
	kt_b64_append(&conn->body, name, namelen);
	appendStringInfoChar(&conn->body, '\t');
	kt_b64_append(&conn->body, value, valuelen);
	appendStringInfoChar(&conn->body, '\n');
}

void
kt_req_param_str(KtConn *conn, const char *name, const char *value)
{
	kt_req_param(conn, name, strlen(name), value, strlen(value));
}

void
kt_req_end(KtConn *conn)
{
	appendStringInfo(&conn->out,
					 "POST /rpc/%s HTTP/1.1\r\n"
					 "Host: %s:%d\r\n"
					 "Content-Type: text/tab-separated-values; colenc=B\r\n"
					 "Content-Length: %d\r\n\r\n",
					 conn->cur_proc, conn->opts.host, conn->opts.port,
					 conn->body.len);
	appendBinaryStringInfo(&conn->out, conn->body.data, conn->body.len);
	conn->nqueued++;
}

/*
 * The caller found a response that does not answer its request (a confused or
 * hostile server): the connection is out of step, so the abort that follows
 * the caller's error closes it, as for an exchange cut in the middle.
 */
void
kt_conn_out_of_step(KtConn *conn)
{
	conn->busy = true;
}

static void
kt_doom(KtConn *conn, const char *why)
{
	if (conn->doomed == NULL)
		conn->doomed = MemoryContextStrdup(TopMemoryContext, why);
}

/*
 * Send all queued requests and read their responses.  Returns false with
 * *emsg set on a transport failure (the connection is then closed).
 * Throws only on interrupts.
 */
static bool
kt_exchange_soft(KtConn *conn, int timeout, KtResult **results, char **emsg)
{
	int			n = conn->nqueued;
	KtResult   *res;
	int			attempt = 0;

	*results = NULL;
	if (n == 0)
		return true;
	res = palloc0(sizeof(KtResult) * n);
	conn->busy = true;

	for (;;)
	{
		bool		was_reused;
		int			in_before;
		bool		closing = false;
		bool		ok = true;
		int			i;
		TimestampTz deadline;

		/*
		 * An idle keep-alive connection has nothing to read.  Bytes there
		 * answer no request of ours (a confused server), and EOF or an error
		 * means the server closed it: either way it is unusable.  Start over
		 * on a fresh connection unless state (a KT transaction, cursors)
		 * lives on this one.
		 */
		if (conn->sock != PGINVALID_SOCKET && conn->reused &&
			conn->in.len == 0)
		{
			char		c;
			ssize_t		r;

			if (conn->ssl != NULL)
			{
				/*
				 * SSL_peek consumes what is not data (TLS 1.3 session tickets
				 * sent after the handshake) and wants more when nothing else
				 * is there: an idle, usable connection.
				 */
				ERR_clear_error();
				r = SSL_peek(conn->ssl, &c, 1);
				if (r <= 0)
				{
					int			e = SSL_get_error(conn->ssl, (int) r);

					errno = (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? EAGAIN : ECONNRESET;
					r = -1;
				}
			}
			else
				r = recv(conn->sock, &c, 1, MSG_PEEK);

			if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
						   errno != EINTR))
			{
				bool		stateless = (!conn->xact_open &&
										 conn->live_cursors == 0);

				kt_disconnect(conn);
				if (!stateless)
				{
					*emsg = pstrdup(r > 0 ?
									"invalid response from KT server: unexpected data on an idle connection" :
									"KT server closed the connection unexpectedly");
					return false;
				}
				conn->busy = true;
			}
		}

		if (conn->sock == PGINVALID_SOCKET)
		{
			if (!kt_connect(conn, timeout, emsg))
			{
				kt_disconnect(conn);
				return false;
			}
			conn->busy = true;
		}
		was_reused = conn->reused;
		in_before = conn->in.len;
		deadline = kt_deadline(timeout);

		if (!kt_send_all(conn, deadline, emsg))
			ok = false;
		for (i = 0; ok && i < n; i++)
		{
			if (!kt_read_response(conn, &res[i], deadline, &closing, emsg))
				ok = false;
			else
			{
				deadline = kt_deadline(timeout);
				if (closing && i < n - 1)
				{
					*emsg = pstrdup("KT server closed the connection in the middle of a pipeline");
					ok = false;
				}
			}
		}
		if (ok)
		{
			if (conn->inpos != conn->in.len)
			{
				*emsg = pstrdup("invalid response from KT server: unexpected data");
				kt_disconnect(conn);
				return false;
			}
			conn->in.len = 0;
			conn->inpos = 0;
			if (conn->in.maxlen > KT_KEEP_BUF_LEN)
				kt_reset_buffer(&conn->in);
			conn->reused = true;
			conn->busy = false;
			if (closing)
				kt_disconnect(conn);
			*results = res;
			return true;
		}

		/*
		 * Transport failure.  Retry once on a fresh connection when a reused
		 * keep-alive connection failed before any response byte arrived and
		 * no state (KT transaction, cursors) lives on it: KT was restarted.
		 */
		{
			bool		nothing_received = (conn->in.len == in_before &&
											conn->inpos == in_before);
			bool		stateless = (!conn->xact_open && conn->live_cursors == 0);

			kt_disconnect(conn);
			if (attempt == 0 && was_reused && nothing_received && stateless)
			{
				attempt++;
				conn->busy = true;
				continue;
			}
			return false;
		}
	}
}

/*
 * Send the queued requests and return their results (one per request the
 * caller queued).  Transport failures raise an ERROR.
 */
KtResult *
kt_exchange(KtConn *conn, int *nresults)
{
	KtResult   *res;
	char	   *emsg = NULL;
	bool		had_xact = conn->xact_open;
	bool		begin_queued = conn->begin_queued;
	int			n = conn->nqueued;

	if (!kt_exchange_soft(conn, conn->opts.timeout, &res, &emsg))
	{
		kt_discard_requests(conn);
		conn->begin_pending = false;
		if (had_xact)
		{
			kt_doom(conn, "the connection to the KT server was lost while a KT transaction was open");
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("%s", emsg),
					 errdetail("The KT transaction on server \"%s\" was discarded by the server.",
							   conn->servername)));
		}
		if (begin_queued)
		{
			/* nothing is open on the server: a later access may retry */
			conn->xact_level = 0;
		}
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("%s", emsg),
				 errdetail("KT server \"%s\" at %s:%d.", conn->servername,
						   conn->opts.host, conn->opts.port)));
	}
	conn->begin_queued = false;
	kt_discard_requests(conn);
	if (begin_queued)
	{
		if (res[0].status != 200)
		{
			conn->xact_level = 0;
			conn->begin_pending = false;
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("could not begin a KT transaction on server \"%s\": %s",
							conn->servername, kt_result_error(&res[0])),
					 errhint("The server needs the ktfdwbegintransaction, ktfdwcommit and ktfdwabort procedures; set the server option use_transactions to 'false' to work without KT transactions.")));
		}
		conn->xact_open = true;
		res++;
		n--;
	}
	if (conn->sock == PGINVALID_SOCKET && (had_xact || begin_queued))
	{
		/* the server closed the connection after answering, "Connection: close" */
		conn->xact_open = false;
		kt_doom(conn, "the KT server closed the connection while a KT transaction was open");
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("KT server \"%s\" closed the connection while a KT transaction was open",
						conn->servername),
				 errdetail("Closing the connection discards the KT transaction.")));
	}
	if (nresults)
		*nresults = n;
	return res;
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------
 */
void
kt_parse_server_opts(Oid serverid, KtServerOpts *opts)
{
	ForeignServer *server = GetForeignServer(serverid);
	ListCell   *lc;

	opts->host = KT_DEFAULT_HOST;
	opts->port = KT_DEFAULT_PORT;
	opts->timeout = KT_DEFAULT_TIMEOUT;
	opts->use_transactions = true;
	opts->batch_size = KT_DEFAULT_BATCH;
	opts->db = NULL;
	opts->sslmode = KT_SSL_DISABLE;
	opts->sslrootcert = NULL;
	opts->sslcert = NULL;
	opts->sslkey = NULL;
	foreach(lc, server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const char *val = defGetString(def);

		if (strcmp(def->defname, "host") == 0)
			opts->host = pstrdup(val);
		else if (strcmp(def->defname, "port") == 0)
			(void) kt_parse_int_opt(val, &opts->port);
		else if (strcmp(def->defname, "timeout") == 0)
			(void) kt_parse_int_opt(val, &opts->timeout);
		else if (strcmp(def->defname, "use_transactions") == 0)
			(void) kt_parse_bool_opt(val, &opts->use_transactions);
		else if (strcmp(def->defname, "batch_size") == 0)
			(void) kt_parse_int_opt(val, &opts->batch_size);
		else if (strcmp(def->defname, "db") == 0)
			opts->db = pstrdup(val);
		else if (strcmp(def->defname, "sslmode") == 0)
			(void) kt_parse_sslmode(val, &opts->sslmode);
		else if (strcmp(def->defname, "sslrootcert") == 0)
			opts->sslrootcert = pstrdup(val);
		else if (strcmp(def->defname, "sslcert") == 0)
			opts->sslcert = pstrdup(val);
		else if (strcmp(def->defname, "sslkey") == 0)
			opts->sslkey = pstrdup(val);
	}
}

static void
kt_load_opts(KtConn *conn)
{
	MemoryContext oldcxt;
	ForeignServer *server = GetForeignServer(conn->serverid);

	if (conn->opts.host)
		pfree(conn->opts.host);
	if (conn->opts.db)
		pfree(conn->opts.db);
	if (conn->opts.sslrootcert)
		pfree(conn->opts.sslrootcert);
	if (conn->opts.sslcert)
		pfree(conn->opts.sslcert);
	if (conn->opts.sslkey)
		pfree(conn->opts.sslkey);
	if (conn->servername)
		pfree(conn->servername);
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	kt_parse_server_opts(conn->serverid, &conn->opts);
	conn->opts.host = pstrdup(conn->opts.host);
	if (conn->opts.db)
		conn->opts.db = pstrdup(conn->opts.db);
	if (conn->opts.sslrootcert)
		conn->opts.sslrootcert = pstrdup(conn->opts.sslrootcert);
	if (conn->opts.sslcert)
		conn->opts.sslcert = pstrdup(conn->opts.sslcert);
	if (conn->opts.sslkey)
		conn->opts.sslkey = pstrdup(conn->opts.sslkey);
	conn->servername = pstrdup(server->servername);
	MemoryContextSwitchTo(oldcxt);
	conn->opts_valid = true;
}

/* ------------------------------------------------------------------------
 * Connection cache
 * ------------------------------------------------------------------------
 */
static void
kt_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	KtConn	   *conn;

	if (kt_conns == NULL)
		return;
	hash_seq_init(&scan, kt_conns);
	while ((conn = (KtConn *) hash_seq_search(&scan)) != NULL)
	{
		if (hashvalue == 0 ||
			(cacheid == FOREIGNSERVEROID && conn->server_hash == hashvalue) ||
			(cacheid == USERMAPPINGOID && conn->mapping_hash == hashvalue))
			conn->invalidated = true;
	}
}

static void kt_xact_callback(XactEvent event, void *arg);
static void kt_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								SubTransactionId parentSubid, void *arg);

void
kt_client_init(void)
{
	if (kt_callbacks_done)
		return;
	kt_callbacks_done = true;
	RegisterXactCallback(kt_xact_callback, NULL);
	RegisterSubXactCallback(kt_subxact_callback, NULL);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, kt_inval_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, kt_inval_callback, (Datum) 0);
}

KtConn *
kt_get_connection(Oid serverid, Oid userid, bool for_access)
{
	UserMapping *um = GetUserMapping(userid, serverid);
	KtConn	   *conn;
	bool		found;

	if (kt_conns == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(KtConn);
		kt_conns = hash_create("kt_fdw connections", 8, &ctl,
							   HASH_ELEM | HASH_BLOBS);
		kt_client_init();
	}

	conn = (KtConn *) hash_search(kt_conns, &um->umid, HASH_ENTER, &found);
	if (!found)
	{
		Oid			umid = conn->umid;

		memset(conn, 0, sizeof(KtConn));
		conn->umid = umid;
		conn->serverid = serverid;
		conn->sock = PGINVALID_SOCKET;
		conn->next_cursor = 1;
		conn->out.data = NULL;
		conn->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
												  ObjectIdGetDatum(serverid));
		conn->mapping_hash = GetSysCacheHashValue1(USERMAPPINGOID,
												   ObjectIdGetDatum(um->umid));
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

			initStringInfo(&conn->out);
			initStringInfo(&conn->body);
			initStringInfo(&conn->in);
			MemoryContextSwitchTo(oldcxt);
		}
	}

	/* A request was cut off (error or cancel): the socket is unusable. */
	if (conn->busy)
	{
		bool		had_xact = conn->xact_open;

		kt_disconnect(conn);
		kt_discard_requests(conn);
		if (had_xact)
			kt_doom(conn, "a request to the KT server was interrupted while a KT transaction was open");
	}

	/* requests queued by a statement that failed before sending them */
	if (conn->nqueued > 0)
		kt_discard_requests(conn);

	/* ALTER SERVER / USER MAPPING: reconnect unless a transaction pins it */
	if (conn->invalidated && conn->xact_level == 0)
	{
		kt_disconnect(conn);
		conn->opts_valid = false;
		conn->invalidated = false;
	}
	if (!conn->opts_valid)
		kt_load_opts(conn);

	if (for_access)
	{
		if (conn->doomed != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_IN_FAILED_SQL_TRANSACTION),
					 errmsg("KT transaction on server \"%s\" cannot continue", conn->servername),
					 errdetail("%s.", conn->doomed),
					 errhint("Roll back the transaction.")));
		conn->touched = true;
		if (conn->opts.use_transactions && conn->xact_level == 0)
		{
			conn->xact_level = GetCurrentTransactionNestLevel();
			conn->begin_pending = true;
		}
	}
	return conn;
}

const KtServerOpts *
kt_conn_opts(KtConn *conn)
{
	return &conn->opts;
}

uint64
kt_conn_new_cursor_id(KtConn *conn)
{
	return conn->next_cursor++;
}

void
kt_conn_cursor_opened(KtConn *conn)
{
	conn->live_cursors++;
}

void
kt_conn_cursor_closed(KtConn *conn)
{
	if (conn->live_cursors > 0)
		conn->live_cursors--;
}

uint64
kt_conn_generation(KtConn *conn)
{
	return conn->generation;
}

/* Record a write at the current subtransaction level. */
void
kt_conn_note_write(KtConn *conn)
{
	int			level = GetCurrentTransactionNestLevel();

	if (conn->opts.use_transactions && level > conn->xact_level &&
		level > conn->write_level)
		conn->write_level = level;
}

/* ------------------------------------------------------------------------
 * Transaction callbacks
 * ------------------------------------------------------------------------
 */

/* Send one play_script to end the KT transaction; never throws. */
static bool
kt_end_xact_soft(KtConn *conn, const char *script, char **emsg)
{
	KtResult   *res;
	int			timeout = conn->opts.timeout;

	if (timeout < 0 || timeout > KT_ABORT_TIMEOUT)
		timeout = KT_ABORT_TIMEOUT;
	kt_discard_requests(conn);
	conn->begin_queued = false;
	conn->begin_pending = false;
	kt_queue_simple(conn, "play_script", "name", script);
	if (!kt_exchange_soft(conn, timeout, &res, emsg))
	{
		kt_discard_requests(conn);
		return false;
	}
	kt_discard_requests(conn);
	conn->xact_open = false;
	if (res[0].status != 200)
	{
		*emsg = pstrdup(kt_result_error(&res[0]));
		return false;
	}
	return true;
}

static void
kt_abort_conn(KtConn *conn)
{
	char	   *emsg = NULL;

	conn->begin_pending = false;
	if (conn->busy || conn->nqueued > 0)
	{
		/* unknown protocol state: closing discards the KT transaction */
		kt_disconnect(conn);
		kt_discard_requests(conn);
		conn->begin_pending = false;
		return;
	}
	if (conn->xact_open && !kt_end_xact_soft(conn, "ktfdwabort", &emsg))
	{
		ereport(WARNING,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not abort the KT transaction on server \"%s\": %s",
						conn->servername, emsg),
				 errdetail("The connection was closed, which discards the transaction.")));
		kt_disconnect(conn);
	}
	conn->xact_open = false;
}

static void
kt_reset_xact_state(KtConn *conn)
{
	conn->touched = false;
	conn->xact_level = 0;
	conn->begin_pending = false;
	conn->begin_queued = false;
	conn->write_level = 0;
	if (conn->doomed)
	{
		pfree(conn->doomed);
		conn->doomed = NULL;
	}
	if (conn->busy || conn->xact_open || conn->live_cursors > 0 ||
		conn->invalidated)
	{
		kt_disconnect(conn);
		if (conn->invalidated)
		{
			conn->opts_valid = false;
			conn->invalidated = false;
		}
	}
	kt_discard_requests(conn);
	conn->begin_pending = false;
}

static void
kt_xact_callback(XactEvent event, void *arg)
{
	HASH_SEQ_STATUS scan;
	KtConn	   *conn;

	if (kt_conns == NULL)
		return;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			hash_seq_init(&scan, kt_conns);
			while ((conn = (KtConn *) hash_seq_search(&scan)) != NULL)
			{
				char	   *emsg = NULL;

				if (!conn->touched)
					continue;
				if (conn->doomed)
				{
					char	   *why = pstrdup(conn->doomed);
					char	   *name = pstrdup(conn->servername);

					hash_seq_term(&scan);
					ereport(ERROR,
							(errcode(ERRCODE_TRANSACTION_ROLLBACK),
							 errmsg("cannot commit: the KT transaction on server \"%s\" is not intact", name),
							 errdetail("%s.", why)));
				}
				conn->begin_pending = false;
				if (!conn->xact_open)
					continue;
				if (conn->busy || conn->nqueued > 0)
				{
					/* should not happen: abandon */
					kt_disconnect(conn);
					hash_seq_term(&scan);
					ereport(ERROR,
							(errcode(ERRCODE_FDW_ERROR),
							 errmsg("cannot commit: the connection to KT server \"%s\" is in an unknown state",
									conn->servername)));
				}
				if (!kt_end_xact_soft(conn, "ktfdwcommit", &emsg))
				{
					char	   *name = pstrdup(conn->servername);

					kt_disconnect(conn);
					conn->xact_level = 0;
					hash_seq_term(&scan);
					ereport(ERROR,
							(errcode(ERRCODE_TRANSACTION_ROLLBACK),
							 errmsg("could not commit the KT transaction on server \"%s\": %s",
									name, emsg)));
				}
				conn->xact_level = 0;
			}
			break;

		case XACT_EVENT_PRE_PREPARE:
			hash_seq_init(&scan, kt_conns);
			while ((conn = (KtConn *) hash_seq_search(&scan)) != NULL)
			{
				if (conn->touched)
				{
					hash_seq_term(&scan);
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot PREPARE a transaction that has operated on kt_fdw foreign tables")));
				}
			}
			break;

		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			hash_seq_init(&scan, kt_conns);
			while ((conn = (KtConn *) hash_seq_search(&scan)) != NULL)
			{
				if (conn->touched || conn->xact_open || conn->busy)
					kt_abort_conn(conn);
				kt_reset_xact_state(conn);
			}
			break;

		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			hash_seq_init(&scan, kt_conns);
			while ((conn = (KtConn *) hash_seq_search(&scan)) != NULL)
				kt_reset_xact_state(conn);
			break;

		default:
			break;
	}
}

static void
kt_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS scan;
	KtConn	   *conn;
	int			level;

	if (kt_conns == NULL)
		return;
	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	level = GetCurrentTransactionNestLevel();

	hash_seq_init(&scan, kt_conns);
	while ((conn = (KtConn *) hash_seq_search(&scan)) != NULL)
	{
		if (!conn->touched)
			continue;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
		{
			/* the subtransaction's work now belongs to its parent */
			if (conn->xact_level == level)
				conn->xact_level = level - 1;
			if (conn->write_level == level)
				conn->write_level = (level - 1 > conn->xact_level) ? level - 1 : 0;
			continue;
		}

		/* SUBXACT_EVENT_ABORT_SUB */
		if (conn->xact_level >= level)
		{
			/* the whole KT transaction was begun inside this subtransaction */
			kt_abort_conn(conn);
			conn->xact_level = 0;
			conn->write_level = 0;
			continue;
		}
		if (conn->busy || conn->nqueued > 0)
		{
			bool		had_xact = conn->xact_open;

			kt_disconnect(conn);
			kt_discard_requests(conn);
			if (had_xact)
				kt_doom(conn, "a request to the KT server was interrupted in a rolled back subtransaction, which discarded the KT transaction");
		}
		if (conn->write_level >= level)
		{
			kt_doom(conn, "a subtransaction (savepoint or exception block) that wrote to the KT server was rolled back, and KT cannot undo its writes");
			conn->write_level = 0;
		}
	}
}
