/* Reading through the archive, and trimming no further than it.
 *
 * A read asks Redis first: when nothing after the cursor was trimmed,
 * Redis's answer is the answer and PostgreSQL is not asked.  Otherwise
 * the result is joined at a seam:
 *
 *   PostgreSQL: ids after the cursor, up to `to`, at most limit, in order;
 *               the seam S is the last of them (the cursor when none)
 *   Redis:      ids after S, up to `to`, checked against what was trimmed
 *
 * so no id can appear twice (Redis starts strictly after S) and the
 * entries are in order.  A gap is only possible where Redis trimmed entries
 * after S: the retention check of the Redis read sees it.  Because the
 * archiver may commit between the two reads (and a trim may then remove
 * what it just archived), a gap found is checked again from S in
 * PostgreSQL; only when PostgreSQL has nothing more is it reported
 * (STX_EWINDOW_EXPIRED: entries neither holds). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"

#define DEFAULT_LIMIT 1000
/* Rounds of "PostgreSQL, then Redis" before a gap is believed. */
#define JOIN_ROUNDS 8

/* ---- bounded decoding of PostgreSQL's binary results -------------------- */

static int get32(const unsigned char **p, const unsigned char *end, uint32_t *v)
{
    if (end - *p < 4) return -1;
    uint32_t x;
    memcpy(&x, *p, 4);
    *v = ntohl(x);
    *p += 4;
    return 0;
}

static int get_i64(const char *s, int len, uint64_t *v)
{
    if (len != 8) return -1;
    const unsigned char *p = (const unsigned char *)s, *end = p + 8;
    uint32_t hi, lo;
    get32(&p, end, &hi);
    get32(&p, end, &lo);
    *v = ((uint64_t)hi << 32) | lo;
    return 0;
}

/* A one-dimensional bytea[] without NULLs: n elements, pointers into the
 * value.  *elems is malloc'd (the caller frees it).  0 or -1. */
static int get_array(const char *s, int len, size_t *n, const char ***elems, size_t **lens)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    uint32_t ndim, flags, oid, dim = 0, lb;
    *elems = NULL;
    *lens = NULL;
    *n = 0;
    if (get32(&p, end, &ndim) || get32(&p, end, &flags) || get32(&p, end, &oid)) return -1;
    if (ndim == 0) return 0;
    if (ndim != 1 || oid != 17 || get32(&p, end, &dim) || get32(&p, end, &lb)) return -1;
    /* Each element takes at least its 4-byte length. */
    if (dim > (size_t)(end - p) / 4) return -1;
    if (!(*elems = calloc(dim ? dim : 1, sizeof **elems)) || !(*lens = calloc(dim ? dim : 1, sizeof **lens))) {
        free(*elems);
        *elems = NULL;
        return -1;
    }
    for (uint32_t i = 0; i < dim; i++) {
        uint32_t l;
        if (get32(&p, end, &l) || l == UINT32_MAX || l > (size_t)(end - p)) goto bad;
        (*elems)[i] = (const char *)p;
        (*lens)[i] = l;
        p += l;
    }
    if (p != end) goto bad;
    *n = dim;
    return 0;
bad:
    free(*elems);
    free(*lens);
    *elems = NULL;
    *lens = NULL;
    return -1;
}

/* Append the rows of r (ms, seq, names, vals; binary) to e. */
static int append_rows(stx_archive *a, PGresult *r, stx_entries *e)
{
    for (int i = 0; i < PQntuples(r); i++) {
        uint64_t ms = 0, seq = 0;
        size_t nn, nv;
        const char **names = NULL, **vals = NULL;
        size_t *nl = NULL, *vl = NULL;
        int rc = STX_OK;
        if (get_i64(PQgetvalue(r, i, 0), PQgetlength(r, i, 0), &ms) ||
            get_i64(PQgetvalue(r, i, 1), PQgetlength(r, i, 1), &seq) ||
            get_array(PQgetvalue(r, i, 2), PQgetlength(r, i, 2), &nn, &names, &nl) ||
            get_array(PQgetvalue(r, i, 3), PQgetlength(r, i, 3), &nv, &vals, &vl) || nn != nv ||
            nn == 0)
            rc = stx_archive_fail(a, STX_EDECODE, "archive: row %d of the archive does not decode", i);
        stx_field *f = rc == STX_OK ? calloc(nn, sizeof *f) : NULL;
        if (rc == STX_OK && !f) rc = stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
        for (size_t k = 0; rc == STX_OK && k < nn; k++)
            f[k] = (stx_field){names[k], nl[k], vals[k], vl[k]};
        if (rc == STX_OK) {
            char id[48];
            snprintf(id, sizeof id, "%llu-%llu", (unsigned long long)ms, (unsigned long long)seq);
            rc = stx_entries_append(e, id, f, nn);
            if (rc != STX_OK) stx_archive_fail(a, rc, "archive: entry %s: cannot join (%s)", id,
                                               stx_strerror(rc));
        }
        free(f);
        free(names);
        free(nl);
        free(vals);
        free(vl);
        if (rc != STX_OK) return rc;
    }
    return STX_OK;
}

/* PostgreSQL's rows of stream in (after, to], at most limit, appended. */
static int pg_range(stx_archive *a, const char *stream, uint64_t ams, uint64_t aseq, uint64_t tms,
                    uint64_t tseq, size_t limit, stx_entries *e, size_t *got)
{
    *got = 0;
    /* bigint holds no id beyond 2^63-1: none was archived there. */
    if (ams > INT64_MAX) return STX_OK;
    if (tms > INT64_MAX) tms = INT64_MAX, tseq = INT64_MAX;
    if (tseq > INT64_MAX) tseq = INT64_MAX;
    /* No archived seq exceeds bigint: after (ms, a larger seq) is after
     * (ms, 2^63-1). */
    if (aseq > INT64_MAX) aseq = INT64_MAX;
    char p1[24], p2[24], p3[24], p4[24], p5[24];
    snprintf(p1, sizeof p1, "%llu", (unsigned long long)ams);
    snprintf(p2, sizeof p2, "%llu", (unsigned long long)aseq);
    snprintf(p3, sizeof p3, "%llu", (unsigned long long)tms);
    snprintf(p4, sizeof p4, "%llu", (unsigned long long)tseq);
    snprintf(p5, sizeof p5, "%zu", limit);
    const char *p[] = {stream, p1, p2, p3, p4, p5};
    PGresult *r = PQexecParams(a->pg,
                               "SELECT ms, seq, names, vals FROM stx_archive_entries"
                               " WHERE stream = $1 AND (ms, seq) > ($2::bigint, $3::bigint)"
                               " AND (ms, seq) <= ($4::bigint, $5::bigint)"
                               " ORDER BY ms, seq LIMIT $6",
                               6, NULL, p, NULL, NULL, 1);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != 4) {
        int rc = stx_archive_pg_fail(a, r, "read");
        PQclear(r);
        return rc;
    }
    int rc = append_rows(a, r, e);
    if (rc == STX_OK) *got = (size_t)PQntuples(r);
    PQclear(r);
    return rc;
}

/* Append Redis's entries of src to dst. */
static int append_entries(stx_archive *a, stx_entries *dst, const stx_entries *src)
{
    for (size_t i = 0; i < stx_entries_count(src); i++) {
        const stx_msg *m = stx_entries_at(src, i);
        size_t nf = stx_msg_field_count(m);
        stx_field *f = calloc(nf ? nf : 1, sizeof *f);
        if (!f) return stx_archive_fail(a, STX_ENOMEM, "archive: out of memory");
        for (size_t k = 0; k < nf; k++)
            stx_msg_field(m, k, &f[k].name, &f[k].name_len, &f[k].value, &f[k].value_len);
        int rc = stx_entries_append(dst, stx_msg_id(m), f, nf);
        free(f);
        if (rc != STX_OK)
            return stx_archive_fail(a, rc, "archive: entry %s of Redis: cannot join (%s)",
                                    stx_msg_id(m), stx_strerror(rc));
    }
    return STX_OK;
}

int stx_archive_read_range(stx_archive *a, stx_client *c, const char *stream, const char *after,
                           const char *to, size_t limit, stx_entries **out)
{
    int rc = stx_read_range(c, stream, after, to, limit, out);
    if (rc != STX_EWINDOW_EXPIRED || !a) return rc;
    if (!limit) limit = DEFAULT_LIMIT;
    /* The cursors were checked by stx_read_range(). */
    uint64_t ams, aseq, tms = UINT64_MAX, tseq = UINT64_MAX;
    if (strcmp(after, "0") == 0) ams = aseq = 0;
    else if (stx_archive_parse_id(after, &ams, &aseq) != 0) return STX_EINVALID_CURSOR;
    if (to && strcmp(to, "+") != 0 && strcmp(to, "0") != 0 &&
        stx_archive_parse_id(to, &tms, &tseq) != 0)
        return STX_EINVALID_CURSOR;
    if (to && strcmp(to, "0") == 0) tms = tseq = 0;
    if ((rc = stx_archive_ready(a)) != STX_OK) return rc;

    stx_entries *e = NULL;
    if ((rc = stx_entries_new(stream, after, &e)) != STX_OK)
        return stx_archive_fail(a, rc, "archive: %s", stx_strerror(rc));
    for (int round = 0; round < JOIN_ROUNDS; round++) {
        size_t got;
        rc = pg_range(a, stream, ams, aseq, tms, tseq, limit - stx_entries_count(e), e, &got);
        if (rc != STX_OK) break;
        if (stx_entries_count(e) == limit) break;
        const char *seam = stx_entries_last_id(e);
        uint64_t sms, sseq;
        /* The archive reached `to`: Redis has nothing to add (and its
         * retention check would look past `to`). */
        if (stx_archive_parse_id(seam, &sms, &sseq) == 0 &&
            (sms > tms || (sms == tms && sseq >= tseq)))
            break;
        stx_entries *red = NULL;
        rc = stx_read_range(c, stream, seam, to, limit - stx_entries_count(e), &red);
        if (rc == STX_OK) {
            rc = append_entries(a, e, red);
            stx_entries_free(red);
            break;
        }
        if (rc != STX_EWINDOW_EXPIRED || got == 0) break; /* neither holds the gap */
        if (stx_archive_parse_id(seam, &ams, &aseq) != 0) break;
    }
    if (rc != STX_OK) {
        stx_entries_free(e);
        return rc;
    }
    *out = e;
    return STX_OK;
}

/* The processor's history source (stx_history_fn): PostgreSQL's rows of
 * stream after `after` and before `before`; the processor gives the
 * stream's first entry as `before`, so the seam is the same as a read's. */
int stx_archive_history(const char *stream, const char *after, const char *before, size_t limit,
                        stx_entries **out, void *archive)
{
    stx_archive *a = archive;
    if (!out) return STX_EINVAL;
    *out = NULL;
    if (!a || !stream || !*stream || !after || !before) return STX_EINVAL;
    uint64_t ams, aseq, tms = UINT64_MAX, tseq = UINT64_MAX;
    if (strcmp(after, "0") == 0) ams = aseq = 0;
    else if (stx_archive_parse_id(after, &ams, &aseq) != 0) return STX_EINVALID_CURSOR;
    int none = 0; /* nothing can be before `before` */
    if (*before) {
        if (stx_archive_parse_id(before, &tms, &tseq) != 0) return STX_EINVALID_CURSOR;
        if (tseq > 0) tseq--;
        else if (tms > 0) tms--, tseq = UINT64_MAX;
        else none = 1;
    }
    if (!limit) limit = DEFAULT_LIMIT;
    int rc = stx_entries_new(stream, after, out);
    if (rc != STX_OK) return stx_archive_fail(a, rc, "archive: %s", stx_strerror(rc));
    if (none) return STX_OK;
    if ((rc = stx_archive_ready(a)) == STX_OK) {
        size_t got;
        rc = pg_range(a, stream, ams, aseq, tms, tseq, limit, *out, &got);
    }
    if (rc != STX_OK) {
        stx_entries_free(*out);
        *out = NULL;
    }
    return rc;
}

/* The archived rows of stream before id `first` ("": all). */
static int pg_count_before(stx_archive *a, const char *stream, const char *first, long long *n)
{
    uint64_t ms = UINT64_MAX, seq = UINT64_MAX;
    if (*first && stx_archive_parse_id(first, &ms, &seq) != 0) return STX_EINVALID_CURSOR;
    if (ms > INT64_MAX) ms = INT64_MAX, seq = INT64_MAX;
    if (seq > INT64_MAX) seq = INT64_MAX;
    char p1[24], p2[24];
    snprintf(p1, sizeof p1, "%llu", (unsigned long long)ms);
    snprintf(p2, sizeof p2, "%llu", (unsigned long long)seq);
    const char *p[] = {stream, p1, p2};
    PGresult *r = PQexecParams(a->pg,
                               "SELECT count(*) FROM stx_archive_entries WHERE stream = $1"
                               " AND (ms, seq) < ($2::bigint, $3::bigint)",
                               3, NULL, p, NULL, NULL, 0);
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = stx_archive_pg_fail(a, r, "count");
        PQclear(r);
        return rc;
    }
    *n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return STX_OK;
}

/* Every entry the stream ever lost is archived when the archive holds as
 * many rows before the stream's first entry as the stream lost in all: the
 * rows before it are entries the stream no longer holds, so they cannot
 * be more than it lost, and as many means all (deletions after the first
 * entry count as lost and make this refuse, which errs on the safe side). */
int stx_archive_reset(stx_archive *a, stx_client *c, const char *stream, const char *group,
                      const char *to, int flags)
{
    if (!a) return STX_EINVAL;
    a->errmsg[0] = '\0'; /* a failure of the reset itself is c's to tell */
    int rc = stx_group_reset(c, stream, group, to, flags);
    if (rc != STX_EWINDOW_EXPIRED || !(flags & STX_RESET_CLEAR_STATE)) return rc;
    stx_stream_info *info = NULL;
    if ((rc = stx_stream_info_get(c, stream, &info)) != STX_OK) return rc;
    long long lost = info->entries_added - info->length, held = 0;
    char first[48];
    snprintf(first, sizeof first, "%s", info->first_id);
    stx_stream_info_free(info);
    if ((rc = stx_archive_ready(a)) != STX_OK ||
        (rc = stx_archive_check_schema(a)) != STX_OK ||
        (rc = pg_count_before(a, stream, first, &held)) != STX_OK)
        return rc;
    if (held < lost)
        return stx_archive_fail(a, STX_EWINDOW_EXPIRED,
                                "archive: stream '%s' lost %lld entries, the archive holds %lld "
                                "of them: a rebuild would miss some",
                                stream, lost, held);
    return stx_group_reset(c, stream, group, to, flags | STX_RESET_FORCE);
}

int stx_archive_read_time(stx_archive *a, stx_client *c, const char *stream, int64_t from_ms,
                          int64_t to_ms, size_t limit, stx_entries **out)
{
    if (!a || from_ms < 0 || to_ms < from_ms) return stx_read_time(c, stream, from_ms, to_ms, limit, out);
    char after[48], to[48];
    if (from_ms > 0)
        snprintf(after, sizeof after, "%lld-%llu", (long long)from_ms - 1,
                 (unsigned long long)UINT64_MAX);
    else
        snprintf(after, sizeof after, "0-0");
    snprintf(to, sizeof to, "%lld-%llu", (long long)to_ms, (unsigned long long)UINT64_MAX);
    return stx_archive_read_range(a, c, stream, after, to, limit, out);
}

int stx_archive_trim(stx_archive *a, stx_client *c, const char *stream, long long maxlen,
                     long long max_age_ms, long long *deleted)
{
    if (deleted) *deleted = 0;
    if (!a || !c || !stream) return a ? stx_archive_fail(a, STX_EINVAL, "trim: bad arguments") : STX_EINVAL;
    int rc = stx_archive_ready(a);
    if (rc == STX_OK) rc = stx_archive_check_schema(a);
    uint64_t ms, seq;
    int found;
    /* The offset only grows, so one read before the trim is a safe bound
     * even while the archiver runs. */
    if (rc == STX_OK) rc = stx_archive_offset(a, stream, &ms, &seq, NULL, &found);
    if (rc != STX_OK) return rc;
    if (!found)
        return stx_archive_fail(a, STX_ENOTFOUND,
                                "trim: nothing of stream '%.200s' was ever archived: nothing may "
                                "be trimmed (run stx archive first)",
                                stream);
    char bound[48];
    snprintf(bound, sizeof bound, "%llu-%llu", (unsigned long long)ms, (unsigned long long)seq);
    rc = stx_trim_safe_bounded(c, stream, maxlen, max_age_ms, bound, deleted);
    if (rc != STX_OK) return stx_archive_fail(a, rc, "%s", stx_client_errmsg(c));
    return STX_OK;
}
