/* Replies built in blocks (see reply.h).
 *
 * A top-level reply owns a chain of blocks.  Its root object is the first
 * thing carved out of the first block, so the root's address leads back to
 * the block header, and from there to the whole chain.  The reader creates
 * the root before any of its elements (an array is created when its header
 * is read), so "a task without a parent" is exactly "a new reply starts". */
#include "reply.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_BLOCK 2048
#define MAX_DOUBLING (1024 * 1024)

typedef struct reply_block {
    struct reply_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} reply_block;

static reply_block *block_new(size_t cap)
{
    if (cap > SIZE_MAX - sizeof(reply_block)) return NULL;
    reply_block *b = malloc(sizeof *b + cap);
    if (!b) return NULL;
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
    return b;
}

static void chain_free(reply_block *b)
{
    while (b) {
        reply_block *next = b->next;
        free(b);
        b = next;
    }
}

/* size bytes aligned to align (a power of two) from the reply being built;
 * NULL when out of memory (the reader then reports an error and frees the
 * root, which frees the chain). */
static void *carve(stx_reply_builder *bl, size_t size, size_t align)
{
    reply_block *b = bl->last;
    size_t at = (b->used + align - 1) & ~(align - 1);
    if (at <= b->cap && size <= b->cap - at) {
        b->used = at + size;
        return b->data + at;
    }
    size_t cap = b->cap < MAX_DOUBLING ? b->cap * 2 : b->cap;
    if (cap < size) cap = size;
    reply_block *nb = block_new(cap);
    if (!nb) return NULL;
    b->next = nb;
    bl->last = nb;
    nb->used = size;
    return nb->data;
}

static redisReply *object(const redisReadTask *task, int type)
{
    stx_reply_builder *bl = task->privdata;
    redisReply *r;
    if (!task->parent) {
        /* a new top-level reply: the blocks of the previous one belong to
         * it now (its root leads to them) */
        reply_block *b = block_new(FIRST_BLOCK);
        if (!b) return NULL;
        bl->first = bl->last = b;
        b->used = sizeof *r;
        r = (redisReply *)(void *)b->data;
    } else {
        r = carve(bl, sizeof *r, alignof(redisReply));
        if (!r) return NULL;
    }
    memset(r, 0, sizeof *r);
    r->type = type;
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

/* Out of memory after object() made r: a root is not the reader's yet, so
 * its blocks are freed here; an element's go with its root. */
static void *abandon(const redisReadTask *task)
{
    stx_reply_builder *bl = task->privdata;
    if (!task->parent) {
        chain_free(bl->first);
        bl->first = bl->last = NULL;
    }
    return NULL;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    stx_reply_builder *bl = task->privdata;
    redisReply *r = object(task, task->type);
    if (!r) return NULL;
    char *s = len < SIZE_MAX ? carve(bl, len + 1, 1) : NULL;
    if (!s) return abandon(task);
    memcpy(s, str, len);
    s[len] = '\0';
    r->str = s;
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    stx_reply_builder *bl = task->privdata;
    redisReply *r = object(task, REDIS_REPLY_ARRAY);
    if (!r) return NULL;
    if (elements > 0) {
        size_t n = (size_t)elements;
        if (n > SIZE_MAX / sizeof(redisReply *)) return abandon(task);
        r->element = carve(bl, n * sizeof(redisReply *), alignof(redisReply *));
        if (!r->element) return abandon(task);
        memset(r->element, 0, n * sizeof(redisReply *));
        r->elements = n;
    }
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = object(task, REDIS_REPLY_INTEGER);
    if (r) r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task)
{
    return object(task, REDIS_REPLY_NIL);
}

void stx_reply_release(redisReply *r)
{
    if (!r) return;
    chain_free((reply_block *)(void *)((unsigned char *)r - offsetof(reply_block, data)));
}

static void free_object(void *r)
{
    stx_reply_release(r);
}

void stx_reply_builder_init(stx_reply_builder *b)
{
    memset(b, 0, sizeof *b);
    b->fn.createString = create_string;
    b->fn.createArray = create_array;
    b->fn.createInteger = create_integer;
    b->fn.createNil = create_nil;
    b->fn.freeObject = free_object;
}
