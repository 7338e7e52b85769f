/*
 * kt_fdw.c
 *		Foreign-data wrapper for Kyoto Tycoon (and servers that speak its
 *		HTTP TSV-RPC protocol).  A foreign table has exactly two columns: the
 *		first is the KT key, the second the value.
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/appendinfo.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/inherit.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "kt_fdw.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(kt_fdw_handler);
PG_FUNCTION_INFO_V1(kt_fdw_validator);

/* Kinds of scan */
enum
{
	KT_OP_SCAN = 0,				/* whole database, cursor in key order */
	KT_OP_PREFIX,				/* cursor from a prefix until the first miss */
	KT_OP_GET,					/* key = expr */
	KT_OP_BULK					/* key = ANY(array) */
};

/* Index of fdw_private items of a ForeignScan */
enum
{
	KT_PRIV_OP = 0,
	KT_PRIV_PREFIX,				/* bytea Const */
	KT_PRIV_NKEYS				/* keys of get_bulk, -1 unknown */
};

#define KT_BULK_CHUNK		1000
#define KT_FETCH_FIRST		32
#define KT_FETCH_MAX		512

/* Per-column conversion data */
typedef struct KtColumn
{
	AttrNumber	attnum;
	Oid			type;
	int32		typmod;
	FmgrInfo	out;
	FmgrInfo	in;
	Oid			ioparam;
} KtColumn;

typedef struct KtTableInfo
{
	KtColumn	key;
	KtColumn	val;
	char	   *db;				/* NULL = default database */
	int			batch_size;
	bool		upsert;			/* INSERT stores with set instead of add */
	Oid			serverid;
} KtTableInfo;

/* What the planner found to push down */
typedef struct KtPushdown
{
	int			op;
	Expr	   *expr;			/* GET: the key, BULK: the array */
	char	   *prefix;
	int			prefixlen;
	int			nkeys;
} KtPushdown;

typedef struct KtScanState
{
	KtConn	   *conn;
	KtTableInfo ti;
	int			op;
	ExprState  *exprstate;
	char	   *prefix;
	int			prefixlen;

	bool		started;
	bool		done;
	uint64		curid;			/* 0 = no cursor yet */
	uint64		cur_generation;
	bool		cursor_registered;
	int			fetch;

	MemoryContext batchcxt;
	int			nrows;
	int			next;
	char	  **keys;
	int		   *keylens;
	char	  **vals;
	int		   *vallens;
} KtScanState;

typedef struct KtModifyState
{
	KtConn	   *conn;
	KtTableInfo ti;
	AttrNumber	key_junk;
	bool		key_updated;
	bool		value_updated;
	int			batch_size;
	const char *insert_proc;	/* "add", or "set" with upsert */
} KtModifyState;

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------
 */
typedef struct KtOption
{
	const char *name;
	Oid			context;
} KtOption;

static const KtOption kt_options[] = {
	{"host", ForeignServerRelationId},
	{"port", ForeignServerRelationId},
	{"timeout", ForeignServerRelationId},
	{"use_transactions", ForeignServerRelationId},
	{"batch_size", ForeignServerRelationId},
	{"db", ForeignServerRelationId},
	{"upsert", ForeignServerRelationId},
	{"sslmode", ForeignServerRelationId},
	{"sslrootcert", ForeignServerRelationId},
	{"sslcert", ForeignServerRelationId},
	{"sslkey", ForeignServerRelationId},
	{"batch_size", ForeignTableRelationId},
	{"db", ForeignTableRelationId},
	{"upsert", ForeignTableRelationId},
	{NULL, InvalidOid}
};

bool
kt_parse_sslmode(const char *value, int *result)
{
	if (strcmp(value, "disable") == 0)
		*result = KT_SSL_DISABLE;
	else if (strcmp(value, "require") == 0)
		*result = KT_SSL_REQUIRE;
	else if (strcmp(value, "verify-ca") == 0)
		*result = KT_SSL_VERIFY_CA;
	else if (strcmp(value, "verify-full") == 0)
		*result = KT_SSL_VERIFY_FULL;
	else
		return false;
	return true;
}

bool
kt_parse_int_opt(const char *value, int *result)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (end == value || *end != '\0' || errno != 0 || v < INT_MIN || v > INT_MAX)
		return false;
	*result = (int) v;
	return true;
}

bool
kt_parse_bool_opt(const char *value, bool *result)
{
	return parse_bool(value, result);
}

Datum
kt_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const char *val;
		const KtOption *opt;
		bool		known = false;
		int			ival;
		bool		bval;

		for (opt = kt_options; opt->name; opt++)
			if (opt->context == catalog && strcmp(opt->name, def->defname) == 0)
				known = true;
		if (!known)
		{
			StringInfoData buf;

			initStringInfo(&buf);
			for (opt = kt_options; opt->name; opt++)
				if (opt->context == catalog)
					appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
									 opt->name);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 buf.len > 0
					 ? errhint("Valid options in this context are: %s", buf.data)
					 : errhint("There are no valid options in this context.")));
		}

		val = defGetString(def);
		if (strcmp(def->defname, "host") == 0 || strcmp(def->defname, "db") == 0)
		{
			if (val[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"%s\" must not be empty", def->defname)));
		}
		else if (strcmp(def->defname, "port") == 0)
		{
			if (!kt_parse_int_opt(val, &ival) || ival < 1 || ival > 65535)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"port\": \"%s\"", val),
						 errhint("The port must be an integer between 1 and 65535.")));
		}
		else if (strcmp(def->defname, "timeout") == 0)
		{
			if (!kt_parse_int_opt(val, &ival) || ival < -1)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"timeout\": \"%s\"", val),
						 errhint("The timeout is a number of seconds, or -1 for no timeout.")));
		}
		else if (strcmp(def->defname, "batch_size") == 0)
		{
			if (!kt_parse_int_opt(val, &ival) || ival < 1 || ival > KT_MAX_BATCH)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"batch_size\": \"%s\"", val),
						 errhint("The batch size must be an integer between 1 and %d.",
								 KT_MAX_BATCH)));
		}
		else if (strcmp(def->defname, "sslmode") == 0)
		{
			if (!kt_parse_sslmode(val, &ival))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"sslmode\": \"%s\"", val),
						 errhint("Valid values are disable, require, verify-ca and verify-full.")));
		}
		else if (strcmp(def->defname, "sslrootcert") == 0 ||
				 strcmp(def->defname, "sslcert") == 0 ||
				 strcmp(def->defname, "sslkey") == 0)
		{
			if (val[0] != '/')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("option \"%s\" must be an absolute path", def->defname)));
		}
		else if (strcmp(def->defname, "use_transactions") == 0 ||
				 strcmp(def->defname, "upsert") == 0)
		{
			if (!kt_parse_bool_opt(val, &bval))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for option \"%s\": \"%s\"",
								def->defname, val),
						 errhint("%s requires a Boolean value.", def->defname)));
		}
	}
	PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------
 * Table layout and conversions
 * ------------------------------------------------------------------------
 */
static void
kt_column_init(KtColumn *col, Form_pg_attribute att, bool need_io)
{
	col->attnum = att->attnum;
	col->type = att->atttypid;
	col->typmod = att->atttypmod;
	if (need_io)
	{
		Oid			func;
		bool		isvarlena;

		getTypeOutputInfo(col->type, &func, &isvarlena);
		fmgr_info(func, &col->out);
		getTypeInputInfo(col->type, &func, &col->ioparam);
		fmgr_info(func, &col->in);
	}
}

static void
kt_table_info(Relation rel, KtTableInfo *ti, bool need_io)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ForeignTable *ft = GetForeignTable(RelationGetRelid(rel));
	KtServerOpts sopts;
	ListCell   *lc;
	int			n = 0;
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (n == 0)
			kt_column_init(&ti->key, att, need_io);
		else if (n == 1)
			kt_column_init(&ti->val, att, need_io);
		n++;
	}
	if (n != 2)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_COLUMN_NUMBER),
				 errmsg("kt_fdw foreign table \"%s\" must have exactly two columns, not %d",
						RelationGetRelationName(rel), n),
				 errdetail("The first column is the KT key and the second column the value.")));

	kt_parse_server_opts(ft->serverid, &sopts);
	ti->serverid = ft->serverid;
	ti->db = sopts.db;
	ti->batch_size = sopts.batch_size;
	ti->upsert = false;
	/* upsert is read here, not in kt_parse_server_opts: only writes use it */
	foreach(lc, GetForeignServer(ft->serverid)->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "upsert") == 0)
			(void) kt_parse_bool_opt(defGetString(def), &ti->upsert);
	}
	foreach(lc, ft->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "db") == 0)
			ti->db = defGetString(def);
		else if (strcmp(def->defname, "batch_size") == 0)
			(void) kt_parse_int_opt(defGetString(def), &ti->batch_size);
		else if (strcmp(def->defname, "upsert") == 0)
			(void) kt_parse_bool_opt(defGetString(def), &ti->upsert);
	}
}

static bool
kt_type_is_binary_safe(Oid type)
{
	return type == TEXTOID || type == VARCHAROID || type == BYTEAOID;
}

/* Bytes of a column value (text-like types and bytea are sent as is). */
static char *
kt_datum_bytes(KtColumn *col, Datum d, int *len)
{
	if (kt_type_is_binary_safe(col->type))
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

		*len = VARSIZE_ANY_EXHDR(v);
		return VARDATA_ANY(v);
	}
	else
	{
		char	   *s = OutputFunctionCall(&col->out, d);

		*len = strlen(s);
		return s;
	}
}

static Datum
kt_bytes_datum(KtColumn *col, const char *data, int len, const char *what)
{
	char	   *s;

	if (col->type == BYTEAOID)
	{
		bytea	   *b = palloc(VARHDRSZ + len);

		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), data, len);
		return PointerGetDatum(b);
	}
	if (!pg_verifymbstr(data, len, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("KT record %s is not valid text in encoding \"%s\"",
						what, GetDatabaseEncodingName()),
				 errhint("Use a bytea column for binary keys or values.")));
	if (col->type == TEXTOID)
		return PointerGetDatum(cstring_to_text_with_len(data, len));
	s = pnstrdup(data, len);
	return InputFunctionCall(&col->in, s, col->ioparam, col->typmod);
}

static void
kt_check_key(const char *key, int len)
{
	if (len > KT_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("KT key is too long (%d bytes)", len),
				 errdetail("kt_fdw accepts keys of at most %d bytes.", KT_MAX_KEY_LEN)));
}

/* Key and value of a slot to be written; NULLs are errors. */
static void
kt_slot_kv(KtTableInfo *ti, TupleTableSlot *slot, char **key, int *keylen,
		   char **val, int *vallen)
{
	Datum		d;
	bool		isnull;

	d = slot_getattr(slot, ti->key.attnum, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("kt_fdw does not accept NULL keys")));
	*key = kt_datum_bytes(&ti->key, d, keylen);
	kt_check_key(*key, *keylen);
	if (val == NULL)
		return;
	d = slot_getattr(slot, ti->val.attnum, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("kt_fdw does not accept NULL values"),
				 errhint("Store an empty value instead.")));
	*val = kt_datum_bytes(&ti->val, d, vallen);
	if (*vallen > KT_MAX_VALUE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("KT value is too long (%d bytes)", *vallen),
				 errdetail("kt_fdw accepts values of at most %d bytes.", KT_MAX_VALUE_LEN)));
}

static void
kt_param_db(KtConn *conn, KtTableInfo *ti)
{
	if (ti->db)
		kt_req_param_str(conn, "DB", ti->db);
}

static void
kt_param_cur(KtConn *conn, uint64 curid)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), UINT64_FORMAT, curid);
	kt_req_param_str(conn, "CUR", buf);
}

static Oid
kt_exec_userid(EState *estate, Index rti, Oid checkAsUser)
{
#if PG_VERSION_NUM >= 160000
	(void) estate;
	(void) rti;
	return OidIsValid(checkAsUser) ? checkAsUser : GetUserId();
#else
	RangeTblEntry *rte = exec_rt_fetch(rti, estate);

	(void) checkAsUser;
	return OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();
#endif
}

/* ------------------------------------------------------------------------
 * Planning
 * ------------------------------------------------------------------------
 */
typedef struct KtRelInfo
{
	AttrNumber	keyatt;
	Oid			keytype;
	double		count;
	Oid			userid;
} KtRelInfo;

static bool
kt_is_key_var(Node *node, Index relid, AttrNumber keyatt)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node && IsA(node, Var) &&
		((Var *) node)->varno == relid &&
		((Var *) node)->varattno == keyatt &&
		((Var *) node)->varlevelsup == 0;
}

static bool
kt_collation_ok(Oid coll)
{
	return !OidIsValid(coll) || get_collation_isdeterministic(coll);
}

static bool
kt_is_eq_func(Oid func)
{
	return func == F_TEXTEQ || func == F_BYTEAEQ;
}

/* Literal prefix of a LIKE pattern (backslash escapes). */
static int
kt_like_prefix(const char *pat, int len, char *out)
{
	int			n = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		char		c = pat[i];

		if (c == '%' || c == '_')
			break;
		if (c == '\\')
		{
			if (i + 1 >= len)
				break;
			c = pat[++i];
		}
		out[n++] = c;
	}
	return n;
}

/* Find the best operation to push down among the RestrictInfos. */
static void
kt_find_pushdown(RelOptInfo *baserel, KtRelInfo *ri, List *clauses,
				 KtPushdown *pd)
{
	ListCell   *lc;
	Index		relid = baserel->relid;

	memset(pd, 0, sizeof(*pd));
	pd->op = KT_OP_SCAN;
	pd->nkeys = -1;
	if (!kt_type_is_binary_safe(ri->keytype))
		return;

	foreach(lc, clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		Expr	   *clause = rinfo->clause;

		if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
		{
			OpExpr	   *op = (OpExpr *) clause;
			Node	   *l = linitial(op->args);
			Node	   *r = lsecond(op->args);
			Oid			func = get_opcode(op->opno);

			if (!kt_collation_ok(op->inputcollid))
				continue;
			if (kt_is_eq_func(func))
			{
				Node	   *other = NULL;

				if (kt_is_key_var(l, relid, ri->keyatt) &&
					!bms_is_member(relid, rinfo->right_relids))
					other = r;
				else if (kt_is_key_var(r, relid, ri->keyatt) &&
						 !bms_is_member(relid, rinfo->left_relids))
					other = l;
				if (other && !contain_volatile_functions(other) &&
					!contain_subplans(other))
				{
					pd->op = KT_OP_GET;
					pd->expr = (Expr *) other;
					return;		/* nothing is better */
				}
			}
			else if ((func == F_TEXTLIKE || func == F_BYTEALIKE) &&
					 kt_is_key_var(l, relid, ri->keyatt) &&
					 IsA(r, Const) && !((Const *) r)->constisnull &&
					 pd->op != KT_OP_BULK)
			{
				struct varlena *pat = DatumGetByteaPP(((Const *) r)->constvalue);
				int			plen = VARSIZE_ANY_EXHDR(pat);
				char	   *prefix = palloc(plen + 1);
				int			n = kt_like_prefix(VARDATA_ANY(pat), plen, prefix);

				if (n > pd->prefixlen)
				{
					pd->op = KT_OP_PREFIX;
					pd->prefix = prefix;
					pd->prefixlen = n;
				}
			}
		}
		else if (IsA(clause, ScalarArrayOpExpr))
		{
			ScalarArrayOpExpr *saop = (ScalarArrayOpExpr *) clause;
			Node	   *l = linitial(saop->args);
			Node	   *r = lsecond(saop->args);

			if (!saop->useOr || !kt_is_eq_func(get_opcode(saop->opno)) ||
				!kt_collation_ok(saop->inputcollid) ||
				!kt_is_key_var(l, relid, ri->keyatt) ||
				contain_vars_of_level(r, 0) ||
				contain_volatile_functions(r) || contain_subplans(r))
				continue;
			pd->op = KT_OP_BULK;
			pd->expr = (Expr *) r;
			pd->prefix = NULL;
			pd->prefixlen = 0;
			if (IsA(r, Const) && !((Const *) r)->constisnull)
			{
				ArrayType  *arr = DatumGetArrayTypeP(((Const *) r)->constvalue);

				pd->nkeys = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
			}
			else if (IsA(r, ArrayExpr))
				pd->nkeys = list_length(((ArrayExpr *) r)->elements);
			else
				pd->nkeys = -1;
		}
	}
}

static void
ktGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KtRelInfo  *ri = palloc0(sizeof(KtRelInfo));
	Relation	rel;
	KtTableInfo ti;
	KtConn	   *conn;
	KtResult   *res;
	const char *count;
	double		sel;

	rel = table_open(foreigntableid, NoLock);
	kt_table_info(rel, &ti, false);
	table_close(rel, NoLock);
	ri->keyatt = ti.key.attnum;
	ri->keytype = ti.key.type;
	ri->userid = OidIsValid(baserel->userid) ? baserel->userid : GetUserId();

	/* one cheap status call per planning gives the record count */
	conn = kt_get_connection(ti.serverid, ri->userid, false);
	kt_req_begin(conn, "status");
	kt_param_db(conn, &ti);
	kt_req_end(conn);
	res = kt_exchange(conn, NULL);
	if (res[0].status != 200)
		kt_report_result(conn, "status", &res[0], 0);
	count = kt_result_get(&res[0], "count", NULL);
	ri->count = count ? strtod(count, NULL) : 1000.0;
	if (ri->count < 0)
		ri->count = 0;

	baserel->fdw_private = ri;
	baserel->tuples = ri->count;
	sel = clauselist_selectivity(root, baserel->baserestrictinfo, 0,
								 JOIN_INNER, NULL);
	baserel->rows = clamp_row_est(ri->count * sel);
}

static void
kt_cost(PlannerInfo *root, RelOptInfo *baserel, KtRelInfo *ri, KtPushdown *pd,
		double rows, Cost *startup, Cost *total)
{
	double		fetched;

	switch (pd->op)
	{
		case KT_OP_GET:
			fetched = 1;
			break;
		case KT_OP_BULK:
			fetched = pd->nkeys > 0 ? pd->nkeys : 10;
			break;
		case KT_OP_PREFIX:
			fetched = Max(rows, 1) * 2;
			break;
		default:
			fetched = Max(ri->count, 1);
			break;
	}
	*startup = 10.0;			/* one round trip */
	*total = *startup + fetched * (cpu_tuple_cost * 2 + 0.005) +
		rows * cpu_tuple_cost;
}

static bool
kt_ec_key_member(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
				 EquivalenceMember *em, void *arg)
{
	KtRelInfo  *ri = (KtRelInfo *) arg;

	return kt_collation_ok(ec->ec_collation) &&
		kt_is_key_var((Node *) em->em_expr, rel->relid, ri->keyatt);
}

static void
kt_add_path(PlannerInfo *root, RelOptInfo *baserel, double rows,
			Cost startup, Cost total, Relids required_outer)
{
	ForeignPath *path;

#if PG_VERSION_NUM >= 170000
	path = create_foreignscan_path(root, baserel, NULL, rows, startup, total,
								   NIL, required_outer, NULL, NIL, NIL);
#else
	path = create_foreignscan_path(root, baserel, NULL, rows, startup, total,
								   NIL, required_outer, NULL, NIL);
#endif
	add_path(baserel, (Path *) path);
}

static void
ktGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	KtRelInfo  *ri = (KtRelInfo *) baserel->fdw_private;
	KtPushdown	pd;
	Cost		startup;
	Cost		total;
	List	   *clauses;
	ListCell   *lc;

	kt_find_pushdown(baserel, ri, baserel->baserestrictinfo, &pd);
	kt_cost(root, baserel, ri, &pd, baserel->rows, &startup, &total);
	kt_add_path(root, baserel, baserel->rows, startup, total,
				baserel->lateral_relids);

	/*
	 * Parameterized paths: key = <expression of other relations>, so that a
	 * nested loop looks every outer key up with one get.
	 */
	if (!kt_type_is_binary_safe(ri->keytype))
		return;
	clauses = generate_implied_equalities_for_column(root, baserel,
													 kt_ec_key_member, ri,
													 baserel->lateral_referencers);
	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		if (IsA(rinfo->clause, OpExpr))
			clauses = lappend(clauses, rinfo);
	}
	foreach(lc, clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		Relids		required_outer;
		ParamPathInfo *ppi;
		KtPushdown	ppd;

		if (!join_clause_is_movable_to(rinfo, baserel))
			continue;
		kt_find_pushdown(baserel, ri, list_make1(rinfo), &ppd);
		if (ppd.op != KT_OP_GET)
			continue;
		required_outer = bms_union(bms_difference(rinfo->clause_relids,
												  baserel->relids),
								   baserel->lateral_relids);
		if (bms_is_empty(required_outer))
			continue;
		ppi = get_baserel_parampathinfo(root, baserel, required_outer);
		kt_cost(root, baserel, ri, &ppd, ppi->ppi_rows, &startup, &total);
		kt_add_path(root, baserel, ppi->ppi_rows, startup, total,
					required_outer);
	}
}

static ForeignScan *
ktGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
				 ForeignPath *best_path, List *tlist, List *scan_clauses,
				 Plan *outer_plan)
{
	KtRelInfo  *ri = (KtRelInfo *) baserel->fdw_private;
	KtPushdown	pd;
	List	   *fdw_private;
	List	   *fdw_exprs = NIL;
	Const	   *prefix;
	bytea	   *pb;
	int			plen;

	kt_find_pushdown(baserel, ri, scan_clauses, &pd);
	if (pd.expr)
		fdw_exprs = list_make1(pd.expr);

	plen = pd.prefixlen;
	pb = palloc(VARHDRSZ + plen);
	SET_VARSIZE(pb, VARHDRSZ + plen);
	if (plen > 0)
		memcpy(VARDATA(pb), pd.prefix, plen);
	prefix = makeConst(BYTEAOID, -1, InvalidOid, -1, PointerGetDatum(pb),
					   false, false);
	fdw_private = list_make3(makeInteger(pd.op), prefix, makeInteger(pd.nkeys));

	/* every qual stays a local filter, so results never depend on pushdown */
	return make_foreignscan(tlist, extract_actual_clauses(scan_clauses, false),
							baserel->relid, fdw_exprs, fdw_private,
							NIL, NIL, outer_plan);
}

/* ------------------------------------------------------------------------
 * Scanning
 * ------------------------------------------------------------------------
 */
static void
ktBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	KtScanState *st = palloc0(sizeof(KtScanState));
	Const	   *prefix;
	Oid			checkAsUser = InvalidOid;

	node->fdw_state = st;
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	kt_table_info(node->ss.ss_currentRelation, &st->ti, true);
	st->op = intVal(list_nth(fsplan->fdw_private, KT_PRIV_OP));
	prefix = (Const *) list_nth(fsplan->fdw_private, KT_PRIV_PREFIX);
	st->prefix = VARDATA_ANY(DatumGetByteaPP(prefix->constvalue));
	st->prefixlen = VARSIZE_ANY_EXHDR(DatumGetByteaPP(prefix->constvalue));
	if (fsplan->fdw_exprs)
		st->exprstate = ExecInitExpr(linitial(fsplan->fdw_exprs), &node->ss.ps);
#if PG_VERSION_NUM >= 160000
	checkAsUser = fsplan->checkAsUser;
#endif
	st->conn = kt_get_connection(st->ti.serverid,
								 kt_exec_userid(estate, fsplan->scan.scanrelid,
												checkAsUser),
								 true);
	st->batchcxt = AllocSetContextCreate(estate->es_query_cxt, "kt_fdw scan",
										 ALLOCSET_DEFAULT_SIZES);
}

static void
kt_add_row(KtScanState *st, const char *key, int keylen, const char *val,
		   int vallen)
{
	if (st->keys == NULL || st->nrows % 64 == 0)
	{
		int			cap = st->nrows + 64;

		if (st->keys == NULL)
		{
			st->keys = palloc(sizeof(char *) * cap);
			st->keylens = palloc(sizeof(int) * cap);
			st->vals = palloc(sizeof(char *) * cap);
			st->vallens = palloc(sizeof(int) * cap);
		}
		else
		{
			st->keys = repalloc(st->keys, sizeof(char *) * cap);
			st->keylens = repalloc(st->keylens, sizeof(int) * cap);
			st->vals = repalloc(st->vals, sizeof(char *) * cap);
			st->vallens = repalloc(st->vallens, sizeof(int) * cap);
		}
	}
	st->keys[st->nrows] = (char *) key;
	st->keylens[st->nrows] = keylen;
	st->vals[st->nrows] = (char *) val;
	st->vallens[st->nrows] = vallen;
	st->nrows++;
}

typedef struct KtKey
{
	char	   *data;
	int			len;
} KtKey;

static int
kt_key_cmp(const void *a, const void *b)
{
	const KtKey *x = (const KtKey *) a;
	const KtKey *y = (const KtKey *) b;
	int			c = memcmp(x->data, y->data, Min(x->len, y->len));

	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

static void
kt_scan_get(ForeignScanState *node, KtScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	bool		isnull;
	Datum		d;
	struct varlena *v;
	KtResult   *res;
	const char *val;
	int			vallen;
	int			keylen;

	d = ExecEvalExpr(st->exprstate, econtext, &isnull);
	st->done = true;
	if (isnull)
		return;
	v = PG_DETOAST_DATUM_PACKED(d);
	if (VARSIZE_ANY_EXHDR(v) > KT_MAX_KEY_LEN)
		return;					/* cannot exist */
	kt_req_begin(st->conn, "get");
	kt_param_db(st->conn, &st->ti);
	kt_req_param(st->conn, "key", 3, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
	kt_req_end(st->conn);
	res = kt_exchange(st->conn, NULL);
	if (res[0].status == 450)
		return;
	if (res[0].status != 200)
		kt_report_result(st->conn, "get", &res[0], 0);
	val = kt_result_get(&res[0], "value", &vallen);
	if (val == NULL || kt_result_get(&res[0], "key", &keylen) != NULL)
	{
		/* not a get answer: the connection is out of step (closed at abort) */
		kt_conn_out_of_step(st->conn);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("invalid get response from KT server")));
	}
	kt_add_row(st, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), val, vallen);
}

static void
kt_scan_bulk(ForeignScanState *node, KtScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	bool		isnull;
	Datum		d;
	ArrayType  *arr;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	KtKey	   *keys;
	int			nkeys = 0;
	int			i;
	KtResult   *res;
	int			nres;

	st->done = true;
	d = ExecEvalExpr(st->exprstate, econtext, &isnull);
	if (isnull)
		return;
	arr = DatumGetArrayTypeP(d);
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign,
					  &elems, &nulls, &nelems);
	keys = palloc(sizeof(KtKey) * Max(nelems, 1));
	for (i = 0; i < nelems; i++)
	{
		struct varlena *v;

		if (nulls[i])
			continue;
		v = PG_DETOAST_DATUM_PACKED(elems[i]);
		if (VARSIZE_ANY_EXHDR(v) > KT_MAX_KEY_LEN)
			continue;
		keys[nkeys].data = VARDATA_ANY(v);
		keys[nkeys].len = VARSIZE_ANY_EXHDR(v);
		nkeys++;
	}
	if (nkeys == 0)
		return;

	/* sorted and unique, so that chunks never return a record twice */
	qsort(keys, nkeys, sizeof(KtKey), kt_key_cmp);
	{
		int			j = 0;

		for (i = 0; i < nkeys; i++)
			if (j == 0 || kt_key_cmp(&keys[j - 1], &keys[i]) != 0)
				keys[j++] = keys[i];
		nkeys = j;
	}

	for (i = 0; i < nkeys; i++)
	{
		char	   *name;

		if (i % KT_BULK_CHUNK == 0)
		{
			if (i > 0)
				kt_req_end(st->conn);
			kt_req_begin(st->conn, "get_bulk");
			kt_param_db(st->conn, &st->ti);
		}
		name = palloc(keys[i].len + 1);
		name[0] = '_';
		memcpy(name + 1, keys[i].data, keys[i].len);
		kt_req_param(st->conn, name, keys[i].len + 1, "", 0);
	}
	kt_req_end(st->conn);
	res = kt_exchange(st->conn, &nres);
	for (i = 0; i < nres; i++)
	{
		int			f;

		if (res[i].status != 200)
			kt_report_result(st->conn, "get_bulk", &res[i], 0);
		for (f = 0; f < res[i].nfields; f++)
		{
			KtField    *fld = &res[i].fields[f];

			if (fld->namelen >= 1 && fld->name[0] == '_')
				kt_add_row(st, fld->name + 1, fld->namelen - 1,
						   fld->value, fld->valuelen);
		}
	}
}

/* One round trip of the cursor: optionally the jump, then N cur_get. */
static void
kt_scan_cursor(KtScanState *st)
{
	KtConn	   *conn = st->conn;
	KtResult   *res;
	int			nres;
	int			i;
	int			first = 0;
	bool		jump = !st->started;

	if (!jump && (!st->cursor_registered ||
				  st->cur_generation != kt_conn_generation(conn)))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("the connection to the KT server was lost during a scan")));
	if (st->curid == 0)
		st->curid = kt_conn_new_cursor_id(conn);
	if (st->cursor_registered && st->cur_generation != kt_conn_generation(conn))
		st->cursor_registered = false;	/* old socket: cursor died with it */

	if (jump)
	{
		kt_req_begin(conn, "cur_jump");
		kt_param_db(conn, &st->ti);
		kt_param_cur(conn, st->curid);
		if (st->op == KT_OP_PREFIX)
			kt_req_param(conn, "key", 3, st->prefix, st->prefixlen);
		kt_req_end(conn);
		st->fetch = KT_FETCH_FIRST;
		st->started = true;
	}
	for (i = 0; i < st->fetch; i++)
	{
		kt_req_begin(conn, "cur_get");
		kt_param_db(conn, &st->ti);
		kt_param_cur(conn, st->curid);
		kt_req_param_str(conn, "step", "");
		kt_req_end(conn);
	}
	res = kt_exchange(conn, &nres);
	if (!st->cursor_registered)
	{
		/* the cursor now exists on the server until cur_delete */
		st->cursor_registered = true;
		st->cur_generation = kt_conn_generation(conn);
		kt_conn_cursor_opened(conn);
	}
	else if (st->cur_generation != kt_conn_generation(conn))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("the connection to the KT server was lost during a scan")));
	if (jump)
	{
		first = 1;
		if (res[0].status == 450)
		{
			st->done = true;
			return;
		}
		if (res[0].status != 200)
			kt_report_result(conn, "cur_jump", &res[0], 0);
	}
	for (i = first; i < nres; i++)
	{
		const char *key;
		const char *val;
		int			keylen;
		int			vallen;

		if (res[i].status == 450)
		{
			st->done = true;
			break;
		}
		if (res[i].status != 200)
			kt_report_result(conn, "cur_get", &res[i], 0);
		key = kt_result_get(&res[i], "key", &keylen);
		val = kt_result_get(&res[i], "value", &vallen);
		if (key == NULL || val == NULL)
		{
			kt_conn_out_of_step(conn);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("invalid cur_get response from KT server")));
		}
		if (st->op == KT_OP_PREFIX &&
			(keylen < st->prefixlen ||
			 memcmp(key, st->prefix, st->prefixlen) != 0))
		{
			st->done = true;
			break;
		}
		kt_add_row(st, key, keylen, val, vallen);
	}
	if (st->fetch < KT_FETCH_MAX)
		st->fetch *= 2;
}

static TupleTableSlot *
ktIterateForeignScan(ForeignScanState *node)
{
	KtScanState *st = (KtScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	TupleDesc	desc = slot->tts_tupleDescriptor;
	int			i;

	while (st->next >= st->nrows)
	{
		MemoryContext oldcxt;

		if (st->done)
			return ExecClearTuple(slot);
		MemoryContextReset(st->batchcxt);
		st->keys = NULL;
		st->nrows = 0;
		st->next = 0;
		oldcxt = MemoryContextSwitchTo(st->batchcxt);
		switch (st->op)
		{
			case KT_OP_GET:
				kt_scan_get(node, st);
				break;
			case KT_OP_BULK:
				kt_scan_bulk(node, st);
				break;
			default:
				kt_scan_cursor(st);
				break;
		}
		if (st->op == KT_OP_GET || st->op == KT_OP_BULK)
			st->started = true;
		MemoryContextSwitchTo(oldcxt);
	}

	ExecClearTuple(slot);
	for (i = 0; i < desc->natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true;
	}
	slot->tts_values[st->ti.key.attnum - 1] =
		kt_bytes_datum(&st->ti.key, st->keys[st->next], st->keylens[st->next], "key");
	slot->tts_isnull[st->ti.key.attnum - 1] = false;
	slot->tts_values[st->ti.val.attnum - 1] =
		kt_bytes_datum(&st->ti.val, st->vals[st->next], st->vallens[st->next], "value");
	slot->tts_isnull[st->ti.val.attnum - 1] = false;
	st->next++;
	return ExecStoreVirtualTuple(slot);
}

static void
ktReScanForeignScan(ForeignScanState *node)
{
	KtScanState *st = (KtScanState *) node->fdw_state;

	st->started = false;
	st->done = false;
	st->nrows = 0;
	st->next = 0;
	st->keys = NULL;
	MemoryContextReset(st->batchcxt);
}

static void
ktEndForeignScan(ForeignScanState *node)
{
	KtScanState *st = (KtScanState *) node->fdw_state;
	KtResult   *res;

	if (st == NULL || st->conn == NULL || !st->cursor_registered)
		return;
	if (st->cur_generation == kt_conn_generation(st->conn))
	{
		kt_req_begin(st->conn, "cur_delete");
		kt_param_cur(st->conn, st->curid);
		kt_req_end(st->conn);
		res = kt_exchange(st->conn, NULL);
		(void) res;
		kt_conn_cursor_closed(st->conn);
	}
	st->cursor_registered = false;
}

static void
kt_explain_bytes(StringInfo buf, const char *data, int len)
{
	int			i;
	bool		printable = true;

	for (i = 0; i < len; i++)
		if ((unsigned char) data[i] < 0x20 || data[i] == 0x7f)
			printable = false;
	if (printable)
	{
		appendStringInfoChar(buf, '\'');
		appendBinaryStringInfo(buf, data, len);
		appendStringInfoChar(buf, '\'');
	}
	else
	{
		appendStringInfoString(buf, "'\\x");
		for (i = 0; i < len; i++)
			appendStringInfo(buf, "%02x", (unsigned char) data[i]);
		appendStringInfoChar(buf, '\'');
	}
}

static void
ktExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	int			op = intVal(list_nth(fsplan->fdw_private, KT_PRIV_OP));
	Const	   *prefix = (Const *) list_nth(fsplan->fdw_private, KT_PRIV_PREFIX);
	int			nkeys = intVal(list_nth(fsplan->fdw_private, KT_PRIV_NKEYS));
	StringInfoData buf;

	initStringInfo(&buf);
	switch (op)
	{
		case KT_OP_GET:
			appendStringInfoString(&buf, "get");
			break;
		case KT_OP_BULK:
			if (nkeys >= 0)
				appendStringInfo(&buf, "get_bulk (%d keys)", nkeys);
			else
				appendStringInfoString(&buf, "get_bulk");
			break;
		case KT_OP_PREFIX:
			{
				bytea	   *p = DatumGetByteaPP(prefix->constvalue);

				appendStringInfoString(&buf, "prefix scan ");
				kt_explain_bytes(&buf, VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p));
			}
			break;
		default:
			appendStringInfoString(&buf, "cursor scan");
			break;
	}
	ExplainPropertyText("KT operation", buf.data, es);

	if (es->verbose)
	{
		KtTableInfo ti;
		KtServerOpts sopts;

		kt_table_info(node->ss.ss_currentRelation, &ti, false);
		kt_parse_server_opts(ti.serverid, &sopts);
		resetStringInfo(&buf);
		appendStringInfo(&buf, "%s:%d", sopts.host, sopts.port);
		ExplainPropertyText("KT server", buf.data, es);
		ExplainPropertyText("KT db", ti.db ? ti.db : "(default)", es);
	}
}

/* ------------------------------------------------------------------------
 * Modification
 * ------------------------------------------------------------------------
 */
#if PG_VERSION_NUM >= 140000
static void
ktAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
						  RangeTblEntry *target_rte, Relation target_relation)
{
	KtTableInfo ti;
	Form_pg_attribute att;
	Var		   *var;

	kt_table_info(target_relation, &ti, false);
	att = TupleDescAttr(RelationGetDescr(target_relation), ti.key.attnum - 1);
	var = makeVar(rtindex, ti.key.attnum, att->atttypid, att->atttypmod,
				  att->attcollation, 0);
	add_row_identity_var(root, var, rtindex, "kt_key");
}
#else
static void
ktAddForeignUpdateTargets(Query *parsetree, RangeTblEntry *target_rte,
						  Relation target_relation)
{
	KtTableInfo ti;
	Form_pg_attribute att;
	Var		   *var;
	TargetEntry *tle;

	kt_table_info(target_relation, &ti, false);
	att = TupleDescAttr(RelationGetDescr(target_relation), ti.key.attnum - 1);
	var = makeVar(parsetree->resultRelation, ti.key.attnum, att->atttypid,
				  att->atttypmod, att->attcollation, 0);
	tle = makeTargetEntry((Expr *) var, list_length(parsetree->targetList) + 1,
						  pstrdup("kt_key"), true);
	parsetree->targetList = lappend(parsetree->targetList, tle);
}
#endif

static List *
ktPlanForeignModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
					int subplan_index)
{
	CmdType		operation = plan->operation;
	RangeTblEntry *rte = planner_rt_fetch(resultRelation, root);
	bool		key_updated = false;
	bool		value_updated = false;

	if (operation == CMD_UPDATE)
	{
		Relation	rel = table_open(rte->relid, NoLock);
		KtTableInfo ti;
		Bitmapset  *cols;

		kt_table_info(rel, &ti, false);
		table_close(rel, NoLock);
#if PG_VERSION_NUM >= 160000
		cols = get_rel_all_updated_cols(root, find_base_rel(root, resultRelation));
#else
		cols = rte->updatedCols;
#endif
		key_updated = bms_is_member(ti.key.attnum - FirstLowInvalidHeapAttributeNumber, cols);
		value_updated = bms_is_member(ti.val.attnum - FirstLowInvalidHeapAttributeNumber, cols);
	}
	return list_make2(makeInteger(key_updated), makeInteger(value_updated));
}

static void
ktBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
					 List *fdw_private, int subplan_index, int eflags)
{
	KtModifyState *ms;
	CmdType		operation = mtstate->operation;
	EState	   *estate = mtstate->ps.state;
	Oid			userid;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	ms = palloc0(sizeof(KtModifyState));
	kt_table_info(rinfo->ri_RelationDesc, &ms->ti, true);
	ms->key_updated = intVal(linitial(fdw_private)) != 0;
	ms->value_updated = intVal(lsecond(fdw_private)) != 0;
	ms->batch_size = ms->ti.batch_size;
	ms->insert_proc = ms->ti.upsert ? "set" : "add";
#if PG_VERSION_NUM >= 160000
	userid = ExecGetResultRelCheckAsUser(rinfo, estate);
#else
	userid = kt_exec_userid(estate, rinfo->ri_RangeTableIndex, InvalidOid);
#endif
	ms->conn = kt_get_connection(ms->ti.serverid, userid, true);

	if (operation == CMD_UPDATE || operation == CMD_DELETE)
	{
#if PG_VERSION_NUM >= 140000
		Plan	   *subplan = outerPlanState(mtstate)->plan;
#else
		Plan	   *subplan = mtstate->mt_plans[subplan_index]->plan;
#endif

		ms->key_junk = ExecFindJunkAttributeInTlist(subplan->targetlist, "kt_key");
		if (!AttributeNumberIsValid(ms->key_junk))
			elog(ERROR, "could not find junk kt_key column");
	}
	rinfo->ri_FdwState = ms;
}

static void
kt_report_write(KtConn *conn, const char *proc, KtResult *res)
{
	int			sqlstate = 0;

	if (res->status == 450 && strcmp(proc, "add") == 0)
		sqlstate = ERRCODE_UNIQUE_VIOLATION;
	kt_report_result(conn, proc, res, sqlstate);
}

static void
kt_queue_add(KtModifyState *ms, TupleTableSlot *slot)
{
	char	   *key;
	char	   *val;
	int			keylen;
	int			vallen;

	kt_slot_kv(&ms->ti, slot, &key, &keylen, &val, &vallen);
	kt_req_begin(ms->conn, ms->insert_proc);
	kt_param_db(ms->conn, &ms->ti);
	kt_req_param(ms->conn, "key", 3, key, keylen);
	kt_req_param(ms->conn, "value", 5, val, vallen);
	kt_req_end(ms->conn);
}

static TupleTableSlot *
ktExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
					TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	KtModifyState *ms = (KtModifyState *) rinfo->ri_FdwState;
	KtResult   *res;

	kt_conn_note_write(ms->conn);
	PG_TRY();
	{
		kt_queue_add(ms, slot);
	}
	PG_CATCH();
	{
		kt_discard_requests(ms->conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	res = kt_exchange(ms->conn, NULL);
	if (res[0].status != 200)
		kt_report_write(ms->conn, ms->insert_proc, &res[0]);
	return slot;
}

#if PG_VERSION_NUM >= 140000
static int
ktGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	KtModifyState *ms = (KtModifyState *) rinfo->ri_FdwState;
	int			size;

	if (ms)
		size = ms->batch_size;
	else
	{
		KtTableInfo ti;

		kt_table_info(rinfo->ri_RelationDesc, &ti, false);
		size = ti.batch_size;
	}
	if (rinfo->ri_projectReturning != NULL ||
		(rinfo->ri_TrigDesc &&
		 (rinfo->ri_TrigDesc->trig_insert_before_row ||
		  rinfo->ri_TrigDesc->trig_insert_after_row)))
		return 1;
	return size;
}

static TupleTableSlot **
ktExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
						 TupleTableSlot **slots, TupleTableSlot **planSlots,
						 int *numSlots)
{
	KtModifyState *ms = (KtModifyState *) rinfo->ri_FdwState;
	KtResult   *res;
	int			nres;
	int			i;

	kt_conn_note_write(ms->conn);
	PG_TRY();
	{
		for (i = 0; i < *numSlots; i++)
			kt_queue_add(ms, slots[i]);
	}
	PG_CATCH();
	{
		kt_discard_requests(ms->conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	res = kt_exchange(ms->conn, &nres);
	for (i = 0; i < nres; i++)
		if (res[i].status != 200)
			kt_report_write(ms->conn, ms->insert_proc, &res[i]);
	return slots;
}
#endif

static char *
kt_old_key(KtModifyState *ms, TupleTableSlot *planSlot, int *len, Datum *datum)
{
	bool		isnull;
	char	   *key;

	*datum = slot_getattr(planSlot, ms->key_junk, &isnull);
	if (isnull)
		elog(ERROR, "kt_key junk column is NULL");
	key = kt_datum_bytes(&ms->ti.key, *datum, len);
	return key;
}

static TupleTableSlot *
ktExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
					TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	KtModifyState *ms = (KtModifyState *) rinfo->ri_FdwState;
	Datum		olddatum;
	int			oldlen;
	char	   *oldkey = kt_old_key(ms, planSlot, &oldlen, &olddatum);
	bool		isnull;
	Datum		d;
	KtResult   *res;

	if (ms->key_updated)
	{
		char	   *newkey;
		int			newlen;

		d = slot_getattr(slot, ms->ti.key.attnum, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("kt_fdw does not accept NULL keys")));
		newkey = kt_datum_bytes(&ms->ti.key, d, &newlen);
		if (newlen != oldlen || memcmp(newkey, oldkey, oldlen) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("kt_fdw cannot change the key of a record"),
					 errhint("DELETE the record and INSERT it with the new key.")));
	}
	if (ms->value_updated)
	{
		char	   *val;
		int			vallen;

		d = slot_getattr(slot, ms->ti.val.attnum, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("kt_fdw does not accept NULL values"),
					 errhint("Store an empty value instead.")));
		val = kt_datum_bytes(&ms->ti.val, d, &vallen);
		if (vallen > KT_MAX_VALUE_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("KT value is too long (%d bytes)", vallen)));
		kt_conn_note_write(ms->conn);
		kt_req_begin(ms->conn, "replace");
		kt_param_db(ms->conn, &ms->ti);
		kt_req_param(ms->conn, "key", 3, oldkey, oldlen);
		kt_req_param(ms->conn, "value", 5, val, vallen);
		kt_req_end(ms->conn);
		res = kt_exchange(ms->conn, NULL);
		if (res[0].status == 450)
			return NULL;		/* the record is gone */
		if (res[0].status != 200)
			kt_report_write(ms->conn, "replace", &res[0]);
	}
	return slot;
}

static TupleTableSlot *
ktExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
					TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	KtModifyState *ms = (KtModifyState *) rinfo->ri_FdwState;
	Datum		olddatum;
	int			keylen;
	char	   *key = kt_old_key(ms, planSlot, &keylen, &olddatum);
	bool		returning = rinfo->ri_projectReturning != NULL;
	const char *proc = returning ? "seize" : "remove";
	KtResult   *res;

	kt_conn_note_write(ms->conn);
	kt_req_begin(ms->conn, proc);
	kt_param_db(ms->conn, &ms->ti);
	kt_req_param(ms->conn, "key", 3, key, keylen);
	kt_req_end(ms->conn);
	res = kt_exchange(ms->conn, NULL);
	if (res[0].status == 450)
		return NULL;			/* already gone */
	if (res[0].status != 200)
		kt_report_write(ms->conn, proc, &res[0]);
	if (returning)
	{
		TupleDesc	desc = slot->tts_tupleDescriptor;
		const char *val;
		int			vallen;
		int			i;

		val = kt_result_get(&res[0], "value", &vallen);
		ExecClearTuple(slot);
		for (i = 0; i < desc->natts; i++)
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
		}
		slot->tts_values[ms->ti.key.attnum - 1] =
			kt_bytes_datum(&ms->ti.key, key, keylen, "key");
		slot->tts_isnull[ms->ti.key.attnum - 1] = false;
		if (val)
		{
			slot->tts_values[ms->ti.val.attnum - 1] =
				kt_bytes_datum(&ms->ti.val, val, vallen, "value");
			slot->tts_isnull[ms->ti.val.attnum - 1] = false;
		}
		ExecStoreVirtualTuple(slot);
	}
	return slot;
}

static void
ktEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
}

/* Only an upserting INSERT says anything: the default output is unchanged. */
static void
ktExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
					   List *fdw_private, int subplan_index,
					   struct ExplainState *es)
{
	KtTableInfo ti;

	if (mtstate->operation != CMD_INSERT)
		return;
	kt_table_info(rinfo->ri_RelationDesc, &ti, false);
	if (ti.upsert)
		ExplainPropertyText("KT operation", "set (upsert)", es);
}

static int
ktIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

Datum
kt_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	kt_client_init();

	routine->GetForeignRelSize = ktGetForeignRelSize;
	routine->GetForeignPaths = ktGetForeignPaths;
	routine->GetForeignPlan = ktGetForeignPlan;
	routine->BeginForeignScan = ktBeginForeignScan;
	routine->IterateForeignScan = ktIterateForeignScan;
	routine->ReScanForeignScan = ktReScanForeignScan;
	routine->EndForeignScan = ktEndForeignScan;
	routine->ExplainForeignScan = ktExplainForeignScan;

	routine->AddForeignUpdateTargets = ktAddForeignUpdateTargets;
	routine->PlanForeignModify = ktPlanForeignModify;
	routine->BeginForeignModify = ktBeginForeignModify;
	routine->ExecForeignInsert = ktExecForeignInsert;
	routine->ExecForeignUpdate = ktExecForeignUpdate;
	routine->ExecForeignDelete = ktExecForeignDelete;
	routine->EndForeignModify = ktEndForeignModify;
	routine->ExplainForeignModify = ktExplainForeignModify;
	routine->IsForeignRelUpdatable = ktIsForeignRelUpdatable;
#if PG_VERSION_NUM >= 140000
	routine->GetForeignModifyBatchSize = ktGetForeignModifyBatchSize;
	routine->ExecForeignBatchInsert = ktExecForeignBatchInsert;
#endif

	PG_RETURN_POINTER(routine);
}
