/* Reading PyTorch's pytorch_model.bin (st_internal.h, pt_open): the zip
 * format torch.save writes since 1.6. The zip's entries are stored, not
 * compressed: <archive>/data.pkl is a pickle of the state dict,
 * <archive>/data/<key> the raw little-endian bytes of storage <key>. The
 * zip's central directory is read here (it gives each entry's offset in the
 * file, so that a tensor is read with one seek, as a safetensors one), and
 * the pickle by a restricted interpreter: only the opcodes torch.save's
 * state dicts use, and of the globals only OrderedDict, the tensor rebuild
 * functions and the storage types; nothing is ever called or imported.
 * The legacy format (before 1.6; checkpoints of 2019-2020 such as
 * lvwerra/gpt2-imdb's) is read too: the same pickles one after another,
 * then the storages (legacy_open). Every length and offset is checked
 * against the file. */
#define _FILE_OFFSET_BITS 64
#include "trainer/st_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PT_MAX_PKL (256u << 20)
#define PT_MAX_STACK 100000

/* ------------------------------------------------------------------ zip */

typedef struct pt_zent {
  char *name;
  uint64_t off, size; /* the data's offset in the file and its byte count */
} pt_zent;

typedef struct pt_zip {
  pt_zent *e;
  int n;
} pt_zip;

static void zip_free(pt_zip *z) {
  for (int i = 0; i < z->n; i++)
    free(z->e[i].name);
  free(z->e);
  memset(z, 0, sizeof *z);
}

static uint32_t le16(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}
static uint32_t le32(const unsigned char *p) {
  return le16(p) | le16(p + 2) << 16;
}
static uint64_t le64(const unsigned char *p) {
  return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static int read_at(FILE *fp, uint64_t off, void *buf, size_t n) {
  return fseeko(fp, (off_t)off, SEEK_SET) == 0 && fread(buf, 1, n, fp) == n;
}

/* Reads the zip64 extra field's values for the fields that are 0xffffffff. */
static void zip64_extra(const unsigned char *x, uint32_t xl, uint64_t *usize, uint64_t *csize,
                        uint64_t *loff) {
  uint32_t p = 0;
  while (p + 4 <= xl) {
    uint32_t id = le16(x + p), sz = le16(x + p + 2);
    if (p + 4 + sz > xl)
      return;
    if (id == 1) {
      uint32_t q = p + 4, end = p + 4 + sz;
      uint64_t *f[3] = {usize, csize, loff};
      for (int i = 0; i < 3; i++)
        if (*f[i] == 0xffffffffu && q + 8 <= end) {
          *f[i] = le64(x + q);
          q += 8;
        }
      return;
    }
    p += 4 + sz;
  }
}

static int zip_open(pt_zip *z, FILE *fp, const char *path, uint64_t fsize, dfpo_err *err) {
  memset(z, 0, sizeof *z);
  /* the end of central directory record: in the last 22 + 65535 bytes */
  uint64_t tail = fsize < 22 + 65535 ? fsize : 22 + 65535;
  unsigned char *t = malloc(tail ? tail : 1);
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (!read_at(fp, fsize - tail, t, tail)) {
    free(t);
    return dfpo_err_set(err, DFPO_EDATA, "%s: cannot read the zip directory", path);
  }
  int64_t at = -1;
  for (int64_t i = (int64_t)tail - 22; i >= 0; i--)
    if (le32(t + i) == 0x06054b50u) {
      at = i;
      break;
    }
  if (at < 0) {
    free(t);
    return dfpo_err_set(err, DFPO_EDATA, "%s: no zip end record (a truncated file?)", path);
  }
  uint64_t nent = le16(t + at + 10), cdsize = le32(t + at + 12), cdoff = le32(t + at + 16);
  /* zip64: the locator just before the end record points at the zip64 end */
  if ((nent == 0xffff || cdoff == 0xffffffffu || cdsize == 0xffffffffu) && at >= 20 &&
      le32(t + at - 20) == 0x07064b50u) {
    uint64_t e64 = le64(t + at - 20 + 8);
    unsigned char r[56];
    if (e64 > fsize - 56 || !read_at(fp, e64, r, 56) || le32(r) != 0x06064b50u) {
      free(t);
      return dfpo_err_set(err, DFPO_EDATA, "%s: bad zip64 end record", path);
    }
    nent = le64(r + 32);
    cdsize = le64(r + 40);
    cdoff = le64(r + 48);
  }
  free(t);
  if (cdoff > fsize || cdsize > fsize - cdoff || nent > cdsize / 46 + 1 || nent > 10000000)
    return dfpo_err_set(err, DFPO_EDATA, "%s: the zip directory does not fit the file", path);
  unsigned char *cd = malloc(cdsize ? cdsize : 1);
  z->e = calloc(nent ? nent : 1, sizeof *z->e);
  if (!cd || !z->e) {
    free(cd);
    zip_free(z);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  int rc = DFPO_OK;
  if (!read_at(fp, cdoff, cd, cdsize)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: cannot read the zip directory", path);
    goto done;
  }
  uint64_t p = 0;
  for (uint64_t i = 0; i < nent; i++) {
    if (cdsize - p < 46 || le32(cd + p) != 0x02014b50u) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: bad zip directory entry %llu", path,
                        (unsigned long long)i);
      goto done;
    }
    const unsigned char *h = cd + p;
    uint32_t method = le16(h + 10), nl = le16(h + 28), xl = le16(h + 30), cl = le16(h + 32);
    uint64_t csize = le32(h + 20), usize = le32(h + 24), loff = le32(h + 42);
    if (cdsize - p - 46 < (uint64_t)nl + xl + cl) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: bad zip directory entry %llu", path,
                        (unsigned long long)i);
      goto done;
    }
    zip64_extra(h + 46 + nl, xl, &usize, &csize, &loff);
    pt_zent *e = &z->e[z->n];
    if (!(e->name = malloc((size_t)nl + 1))) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      goto done;
    }
    memcpy(e->name, h + 46, nl);
    e->name[nl] = 0;
    z->n++;
    if (method != 0 || csize != usize) {
      rc =
          dfpo_err_set(err, DFPO_EDATA,
                       "%s: zip entry '%s' is compressed (method %u, %llu bytes for %llu); "
                       "torch.save stores its entries uncompressed",
                       path, e->name, method, (unsigned long long)csize, (unsigned long long)usize);
      goto done;
    }
    unsigned char lh[30];
    if (loff > fsize - 30 || !read_at(fp, loff, lh, 30) || le32(lh) != 0x04034b50u) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: zip entry '%s': bad local header", path, e->name);
      goto done;
    }
    e->off = loff + 30 + le16(lh + 26) + le16(lh + 28);
    e->size = usize;
    if (e->off > fsize || e->size > fsize - e->off) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: zip entry '%s' runs past the end of the file", path,
                        e->name);
      goto done;
    }
    p += 46 + (uint64_t)nl + xl + cl;
  }
done:
  free(cd);
  if (rc)
    zip_free(z);
  return rc;
}

static const pt_zent *zip_find(const pt_zip *z, const char *name) {
  for (int i = 0; i < z->n; i++)
    if (strcmp(z->e[i].name, name) == 0)
      return &z->e[i];
  return NULL;
}

/* --------------------------------------------------------------- pickle */

typedef enum {
  PV_MARK,
  PV_NONE,
  PV_BOOL,
  PV_INT,
  PV_STR,
  PV_TUPLE,
  PV_DICT,
  PV_GLOBAL,
  PV_STORAGE,
  PV_TENSOR,
  PV_LIST,
  PV_BIG /* an integer wider than 64 bits (the legacy format's magic): never used */
} pv_kind;

/* the globals a state dict may name */
typedef enum { G_ODICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_STORAGE } pv_global;

typedef struct pv pv;
struct pv {
  pv_kind k;
  pv *next_alloc; /* every value, for freeing */
  int64_t i;      /* PV_INT, PV_BOOL; PV_GLOBAL: the pv_global */
  char *s;        /* PV_STR */
  pv **items;     /* PV_TUPLE: n items; PV_DICT: n keys and n values, interleaved */
  int64_t n, cap;
  /* PV_GLOBAL of a storage type, PV_STORAGE and PV_TENSOR */
  const char *dtype;
  int esize;
  /* PV_STORAGE */
  const char *key;
  int64_t numel;
  /* PV_TENSOR */
  pv *storage;
  int64_t offset;
  int ndim;
  int64_t shape[4], stride[4];
};

typedef struct pt_vm {
  const char *path;
  dfpo_err *err;
  pv *all;
  pv **stack;
  int64_t sp, scap;
  pv **memo;
  int64_t nmemo;
} pt_vm;

static const struct {
  const char *name, *dtype;
  int esize;
} storage_types[] = {
    {"FloatStorage", "F32", 4},  {"HalfStorage", "F16", 2}, {"BFloat16Storage", "BF16", 2},
    {"DoubleStorage", "F64", 8}, {"LongStorage", "I64", 8}, {"IntStorage", "I32", 4},
    {"ShortStorage", "I16", 2},  {"CharStorage", "I8", 1},  {"ByteStorage", "U8", 1},
    {"BoolStorage", "BOOL", 1},
};

static pv *pv_new(pt_vm *vm, pv_kind k) {
  pv *v = calloc(1, sizeof *v);
  if (!v) {
    dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
    return NULL;
  }
  v->k = k;
  v->next_alloc = vm->all;
  vm->all = v;
  return v;
}

static int bad(pt_vm *vm, const char *what) {
  return dfpo_err_set(vm->err, DFPO_EDATA, "%s: data.pkl: %s", vm->path, what);
}

static int push(pt_vm *vm, pv *v) {
  if (!v)
    return DFPO_ERUNTIME;
  if (vm->sp == vm->scap) {
    if (vm->scap >= PT_MAX_STACK)
      return bad(vm, "stack too deep");
    int64_t nc = vm->scap ? vm->scap * 2 : 64;
    pv **s = realloc(vm->stack, sizeof *s * (size_t)nc);
    if (!s)
      return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
    vm->stack = s;
    vm->scap = nc;
  }
  vm->stack[vm->sp++] = v;
  return DFPO_OK;
}

static pv *pop(pt_vm *vm) {
  if (vm->sp == 0 || vm->stack[vm->sp - 1]->k == PV_MARK) {
    bad(vm, "stack underflow");
    return NULL;
  }
  return vm->stack[--vm->sp];
}

/* The index of the topmost mark, or -1 (an error set). */
static int64_t find_mark(pt_vm *vm) {
  for (int64_t i = vm->sp - 1; i >= 0; i--)
    if (vm->stack[i]->k == PV_MARK)
      return i;
  bad(vm, "no mark on the stack");
  return -1;
}

static int dict_set(pt_vm *vm, pv *d, pv *k, pv *v) {
  if (d->k != PV_DICT)
    return bad(vm, "SETITEM(S) on something not a dict");
  if (d->n == d->cap) {
    int64_t nc = d->cap ? d->cap * 2 : 16;
    pv **it = realloc(d->items, sizeof *it * 2 * (size_t)nc);
    if (!it)
      return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
    d->items = it;
    d->cap = nc;
  }
  d->items[2 * d->n] = k;
  d->items[2 * d->n + 1] = v;
  d->n++;
  return DFPO_OK;
}

/* A tuple of the n values above stack[from]; they are popped. */
static int make_tuple(pt_vm *vm, int64_t from, int64_t n) {
  pv *t = pv_new(vm, PV_TUPLE);
  if (!t)
    return DFPO_ERUNTIME;
  if (n && !(t->items = malloc(sizeof *t->items * (size_t)n)))
    return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
  for (int64_t i = 0; i < n; i++)
    t->items[i] = vm->stack[from + i];
  t->n = n;
  vm->sp = from;
  return push(vm, t);
}

static int global(pt_vm *vm, const char *mod, const char *name) {
  pv *g = pv_new(vm, PV_GLOBAL);
  if (!g)
    return DFPO_ERUNTIME;
  if (strcmp(mod, "collections") == 0 && strcmp(name, "OrderedDict") == 0)
    g->i = G_ODICT;
  else if (strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0)
    g->i = G_REBUILD_TENSOR;
  else if (strcmp(mod, "torch._utils") == 0 && strcmp(name, "_rebuild_parameter") == 0)
    g->i = G_REBUILD_PARAM;
  else {
    g->i = -1;
    for (size_t k = 0;
         strcmp(mod, "torch") == 0 && k < sizeof storage_types / sizeof *storage_types; k++)
      if (strcmp(name, storage_types[k].name) == 0) {
        g->i = G_STORAGE;
        g->dtype = storage_types[k].dtype;
        g->esize = storage_types[k].esize;
      }
    if (g->i < 0)
      return dfpo_err_set(vm->err, DFPO_EDATA,
                          "%s: data.pkl names the global %s.%s, which is not one a PyTorch "
                          "state dict uses; refused (nothing was executed)",
                          vm->path, mod, name);
  }
  return push(vm, g);
}

static int int_tuple(pt_vm *vm, const pv *t, int64_t *out, int *n) {
  if (t->k != PV_TUPLE || t->n > 4)
    return bad(vm, "a tensor's size or stride is not a tuple of at most 4 ints");
  for (int64_t i = 0; i < t->n; i++) {
    if (t->items[i]->k != PV_INT || t->items[i]->i < 0)
      return bad(vm, "a tensor's size or stride holds something not a non-negative int");
    out[i] = t->items[i]->i;
  }
  *n = (int)t->n;
  return DFPO_OK;
}

static int reduce(pt_vm *vm) {
  pv *args = pop(vm), *f = args ? pop(vm) : NULL;
  if (!f)
    return DFPO_EDATA;
  if (f->k != PV_GLOBAL || args->k != PV_TUPLE)
    return bad(vm, "REDUCE of something not an allowed global with a tuple");
  if (f->i == G_ODICT) {
    if (args->n != 0)
      return bad(vm, "OrderedDict called with arguments");
    return push(vm, pv_new(vm, PV_DICT));
  }
  if (f->i == G_REBUILD_PARAM) {
    if (args->n < 1 || args->items[0]->k != PV_TENSOR)
      return bad(vm, "_rebuild_parameter without a tensor");
    return push(vm, args->items[0]);
  }
  if (f->i != G_REBUILD_TENSOR)
    return bad(vm, "a storage type called");
  /* (storage, storage_offset, size, stride, requires_grad, hooks[, metadata]) */
  if (args->n < 4 || args->items[0]->k != PV_STORAGE || args->items[1]->k != PV_INT ||
      args->items[1]->i < 0)
    return bad(vm, "_rebuild_tensor_v2 with arguments not (storage, offset, size, stride, ...)");
  pv *t = pv_new(vm, PV_TENSOR);
  if (!t)
    return DFPO_ERUNTIME;
  int ns = 0, nt = 0, rc;
  if ((rc = int_tuple(vm, args->items[2], t->shape, &ns)) ||
      (rc = int_tuple(vm, args->items[3], t->stride, &nt)))
    return rc;
  if (ns != nt)
    return bad(vm, "a tensor's size and stride differ in length");
  t->storage = args->items[0];
  t->dtype = t->storage->dtype;
  t->esize = t->storage->esize;
  t->offset = args->items[1]->i;
  t->ndim = ns;
  return push(vm, t);
}

static int persid(pt_vm *vm) {
  pv *t = pop(vm);
  if (!t)
    return DFPO_EDATA;
  /* ('storage', storage type, key, location, numel); the legacy format adds
   * a view (None: views of storages are not read) */
  if (t->k != PV_TUPLE || (t->n != 5 && !(t->n == 6 && t->items[5]->k == PV_NONE)) ||
      t->items[0]->k != PV_STR || strcmp(t->items[0]->s, "storage") != 0 ||
      t->items[1]->k != PV_GLOBAL || t->items[1]->i != G_STORAGE || t->items[2]->k != PV_STR ||
      t->items[4]->k != PV_INT || t->items[4]->i < 0)
    return bad(vm, "a persistent id not ('storage', type, key, location, numel)");
  pv *s = pv_new(vm, PV_STORAGE);
  if (!s)
    return DFPO_ERUNTIME;
  s->dtype = t->items[1]->dtype;
  s->esize = t->items[1]->esize;
  s->key = t->items[2]->s;
  s->numel = t->items[4]->i;
  return push(vm, s);
}

/* Runs the pickle p[0..n); *root receives the value STOP returns. */
static int run(pt_vm *vm, const unsigned char *p, size_t n, pv **root, size_t *used) {
  size_t i = 0;
  int rc = DFPO_OK;
#define NEED(k)                                                                                    \
  do {                                                                                             \
    if (n - i < (size_t)(k))                                                                       \
      return bad(vm, "truncated");                                                                 \
  } while (0)
  while (!rc) {
    NEED(1);
    unsigned op = p[i++];
    switch (op) {
    case 0x80: /* PROTO */
      NEED(1);
      if (p[i] < 2 || p[i] > 5)
        return bad(vm, "an unknown pickle protocol");
      i++;
      break;
    case 0x95: /* FRAME */
      NEED(8);
      i += 8;
      break;
    case '.': { /* STOP */
      pv *r = pop(vm);
      if (!r)
        return DFPO_EDATA;
      *root = r;
      *used = i;
      return DFPO_OK;
    }
    case '(': /* MARK */
      rc = push(vm, pv_new(vm, PV_MARK));
      break;
    case ']': /* EMPTY_LIST */
      rc = push(vm, pv_new(vm, PV_LIST));
      break;
    case 'a':   /* APPEND */
    case 'e': { /* APPENDS */
      int64_t m = vm->sp - 2;
      if (op == 'e' && (m = find_mark(vm) - 1) < -1)
        return DFPO_EDATA;
      if (m < 0 || vm->stack[m]->k != PV_LIST || vm->stack[vm->sp - 1]->k == PV_MARK)
        return bad(vm, "APPEND(S) without a list");
      pv *l = vm->stack[m];
      int64_t from = op == 'e' ? m + 2 : m + 1;
      for (int64_t j = from; j < vm->sp; j++) {
        if (l->n == l->cap) {
          int64_t nc = l->cap ? l->cap * 2 : 16;
          pv **it = realloc(l->items, sizeof *it * (size_t)nc);
          if (!it)
            return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
          l->items = it;
          l->cap = nc;
        }
        l->items[l->n++] = vm->stack[j];
      }
      vm->sp = m + 1;
      break;
    }
    case '}': /* EMPTY_DICT */
      rc = push(vm, pv_new(vm, PV_DICT));
      break;
    case ')': /* EMPTY_TUPLE */
      rc = make_tuple(vm, vm->sp, 0);
      break;
    case 'N': /* NONE */
      rc = push(vm, pv_new(vm, PV_NONE));
      break;
    case 0x88:   /* NEWTRUE */
    case 0x89: { /* NEWFALSE */
      pv *v = pv_new(vm, PV_BOOL);
      if (v)
        v->i = op == 0x88;
      rc = push(vm, v);
      break;
    }
    case 'K':   /* BININT1 */
    case 'M':   /* BININT2 */
    case 'J': { /* BININT */
      int w = op == 'K' ? 1 : op == 'M' ? 2 : 4;
      NEED(w);
      pv *v = pv_new(vm, PV_INT);
      if (v)
        v->i = w == 1 ? p[i] : w == 2 ? (int64_t)le16(p + i) : (int64_t)(int32_t)le32(p + i);
      i += (size_t)w;
      rc = push(vm, v);
      break;
    }
    case 0x8a: { /* LONG1 */
      NEED(1);
      unsigned w = p[i++];
      NEED(w);
      if (w > 8) {
        i += w;
        rc = push(vm, pv_new(vm, PV_BIG));
        break;
      }
      uint64_t u = 0;
      for (unsigned b = 0; b < w; b++)
        u |= (uint64_t)p[i + b] << (8 * b);
      if (w && w < 8 && (p[i + w - 1] & 0x80))
        u |= ~(uint64_t)0 << (8 * w); /* sign extension */
      i += w;
      pv *v = pv_new(vm, PV_INT);
      if (v)
        memcpy(&v->i, &u, 8);
      rc = push(vm, v);
      break;
    }
    case 'X':    /* BINUNICODE */
    case 0x8c: { /* SHORT_BINUNICODE */
      size_t w = op == 'X' ? 4 : 1;
      NEED(w);
      size_t L = w == 4 ? le32(p + i) : p[i];
      i += w;
      NEED(L);
      pv *v = pv_new(vm, PV_STR);
      if (v && !(v->s = malloc(L + 1)))
        return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
      if (v) {
        memcpy(v->s, p + i, L);
        v->s[L] = 0;
        if (strlen(v->s) != L)
          return bad(vm, "a string with a NUL byte");
      }
      i += L;
      rc = push(vm, v);
      break;
    }
    case 't': { /* TUPLE */
      int64_t m = find_mark(vm);
      if (m < 0)
        return DFPO_EDATA;
      rc = make_tuple(vm, m + 1, vm->sp - m - 1);
      if (!rc) { /* drop the mark under the tuple */
        vm->stack[m] = vm->stack[m + 1];
        vm->sp = m + 1;
      }
      break;
    }
    case 0x85:   /* TUPLE1 */
    case 0x86:   /* TUPLE2 */
    case 0x87: { /* TUPLE3 */
      int64_t k = op - 0x84;
      if (vm->sp < k)
        return bad(vm, "stack underflow");
      for (int64_t j = vm->sp - k; j < vm->sp; j++)
        if (vm->stack[j]->k == PV_MARK)
          return bad(vm, "a mark inside a tuple");
      rc = make_tuple(vm, vm->sp - k, k);
      break;
    }
    case 'c': { /* GLOBAL: "module\nname\n" */
      const char *s = (const char *)p + i;
      const char *nl1 = memchr(s, '\n', n - i);
      const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', n - i - (size_t)(nl1 + 1 - s)) : NULL;
      if (!nl2 || nl1 - s > 200 || nl2 - nl1 > 200)
        return bad(vm, "a bad GLOBAL");
      char mod[201], name[201];
      snprintf(mod, sizeof mod, "%.*s", (int)(nl1 - s), s);
      snprintf(name, sizeof name, "%.*s", (int)(nl2 - nl1 - 1), nl1 + 1);
      i += (size_t)(nl2 + 1 - s);
      rc = global(vm, mod, name);
      break;
    }
    case 0x93: { /* STACK_GLOBAL */
      pv *name = pop(vm), *mod = name ? pop(vm) : NULL;
      if (!mod)
        return DFPO_EDATA;
      if (mod->k != PV_STR || name->k != PV_STR)
        return bad(vm, "STACK_GLOBAL of something not two strings");
      rc = global(vm, mod->s, name->s);
      break;
    }
    case 'Q': /* BINPERSID */
      rc = persid(vm);
      break;
    case 'R': /* REDUCE */
      rc = reduce(vm);
      break;
    case 'b': { /* BUILD: the state (a dict's __dict__, e.g. _metadata) is dropped */
      pv *state = pop(vm);
      if (!state)
        return DFPO_EDATA;
      if (vm->sp == 0 ||
          (vm->stack[vm->sp - 1]->k != PV_DICT && vm->stack[vm->sp - 1]->k != PV_TENSOR))
        return bad(vm, "BUILD of something not a dict or tensor");
      break;
    }
    case 's': { /* SETITEM */
      pv *v = pop(vm), *k = v ? pop(vm) : NULL;
      if (!k || vm->sp == 0)
        return bad(vm, "stack underflow");
      rc = dict_set(vm, vm->stack[vm->sp - 1], k, v);
      break;
    }
    case 'u': { /* SETITEMS */
      int64_t m = find_mark(vm);
      if (m < 0)
        return DFPO_EDATA;
      if (m == 0 || (vm->sp - m - 1) % 2)
        return bad(vm, "SETITEMS without a dict or with an odd count");
      for (int64_t j = m + 1; !rc && j < vm->sp; j += 2)
        rc = dict_set(vm, vm->stack[m - 1], vm->stack[j], vm->stack[j + 1]);
      vm->sp = m;
      break;
    }
    case 'q':    /* BINPUT */
    case 'r':    /* LONG_BINPUT */
    case 0x94: { /* MEMOIZE */
      int64_t idx = vm->nmemo;
      if (op != 0x94) {
        size_t w = op == 'q' ? 1 : 4;
        NEED(w);
        idx = w == 1 ? p[i] : le32(p + i);
        i += w;
      }
      if (vm->sp == 0 || vm->stack[vm->sp - 1]->k == PV_MARK)
        return bad(vm, "memoizing an empty stack");
      if (idx > vm->nmemo + 1000000)
        return bad(vm, "a memo index out of range");
      if (idx >= vm->nmemo) {
        pv **m = realloc(vm->memo, sizeof *m * (size_t)(idx + 1));
        if (!m)
          return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
        for (int64_t j = vm->nmemo; j <= idx; j++)
          m[j] = NULL;
        vm->memo = m;
        vm->nmemo = idx + 1;
      }
      vm->memo[idx] = vm->stack[vm->sp - 1];
      break;
    }
    case 'h':   /* BINGET */
    case 'j': { /* LONG_BINGET */
      size_t w = op == 'h' ? 1 : 4;
      NEED(w);
      int64_t idx = w == 1 ? p[i] : le32(p + i);
      i += w;
      if (idx >= vm->nmemo || !vm->memo[idx])
        return bad(vm, "BINGET of an empty memo slot");
      rc = push(vm, vm->memo[idx]);
      break;
    }
    default:
      return dfpo_err_set(vm->err, DFPO_EDATA,
                          "%s: data.pkl: pickle opcode 0x%02x at byte %zu is not one a PyTorch "
                          "state dict uses; refused",
                          vm->path, op, i - 1);
    }
  }
#undef NEED
  return rc;
}

static void vm_free(pt_vm *vm) {
  while (vm->all) {
    pv *v = vm->all;
    vm->all = v->next_alloc;
    free(v->s);
    free(v->items);
    free(v);
  }
  free(vm->stack);
  free(vm->memo);
}

/* ----------------------------------------------------------- the file */

/* Turns tensor t (named name) into entry e; names go to the pool. */
/* Where the storages are: a zip's entries (<prefix>/data/<key>), or the
 * legacy format's records (keys[i] at offset off[i], size[i] bytes). */
typedef struct pt_src {
  const pt_zip *z;
  const char *prefix;
  const pv *keys; /* PV_LIST of PV_STR */
  uint64_t *off, *size;
} pt_src;

static int to_entry(const char *path, const pt_src *src, const char *name, const pv *t, st_entry *e,
                    dfpo_err *err) {
  const pv *s = t->storage;
  char key[512];
  pt_zent found = {0};
  const pt_zent *ze = NULL;
  if (src->z) {
    if (snprintf(key, sizeof key, "%s/data/%s", src->prefix, s->key) >= (int)sizeof key)
      return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': storage key too long", path, name);
    ze = zip_find(src->z, key);
  } else {
    snprintf(key, sizeof key, "%.500s", s->key);
    for (int64_t i = 0; i < src->keys->n && !ze; i++)
      if (strcmp(src->keys->items[i]->s, s->key) == 0) {
        found.off = src->off[i];
        found.size = src->size[i];
        ze = &found;
      }
  }
  if (!ze)
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': storage %s is not in the file", path,
                        name, key);
  if ((uint64_t)s->numel > ze->size / (uint64_t)s->esize)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: tensor '%s': storage %s holds %llu bytes, %lld elements of %s need "
                        "%llu (truncated)",
                        path, name, key, (unsigned long long)ze->size, (long long)s->numel,
                        s->dtype, (unsigned long long)s->numel * (uint64_t)s->esize);
  uint64_t numel = 1; /* of the dimensions after d: the stride d must have */
  int contiguous = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    /* both factors at most 2^40 before each product: no overflow */
    if (t->shape[d] > ((int64_t)1 << 40) || numel > ((uint64_t)1 << 40))
      return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': shape too large", path, name);
    if (t->shape[d] != 1 && (uint64_t)t->stride[d] != numel)
      contiguous = 0;
    numel *= (uint64_t)t->shape[d];
  }
  if (numel > ((uint64_t)1 << 40))
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': shape too large", path, name);
  if (!contiguous && numel > 0)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: tensor '%s' is not contiguous in its storage (a view); save "
                        "{k: v.contiguous()} instead",
                        path, name);
  if ((uint64_t)t->offset > (uint64_t)s->numel || numel > (uint64_t)s->numel - (uint64_t)t->offset)
    return dfpo_err_set(
        err, DFPO_EDATA, "%s: tensor '%s': elements %lld..%lld outside its storage of %lld", path,
        name, (long long)t->offset, (long long)(t->offset + (int64_t)numel), (long long)s->numel);
  e->dtype = t->dtype;
  e->ndim = t->ndim;
  for (int d = 0; d < t->ndim; d++)
    e->shape[d] = t->shape[d];
  e->begin = ze->off + (uint64_t)t->offset * (uint64_t)t->esize;
  e->end = e->begin + numel * (uint64_t)t->esize;
  return DFPO_OK;
}

/* The legacy format (torch.save before 1.6): pickles one after another
 * (the magic number, the protocol version 1001, sys_info, the object, the
 * list of storage keys), then each storage of that list as an 8-byte
 * little-endian element count and its bytes. */
static const unsigned char legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                             0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};

static const pv *dict_get(const pv *d, const char *key) {
  for (int64_t k = 0; d->k == PV_DICT && k < d->n; k++)
    if (d->items[2 * k]->k == PV_STR && strcmp(d->items[2 * k]->s, key) == 0)
      return d->items[2 * k + 1];
  return NULL;
}

/* Runs the legacy file's pickles; *root the object, src its storages. */
static int legacy_open(pt_vm *vm, FILE *fp, uint64_t fsize, unsigned char **pkl, pv **root,
                       pt_src *src) {
  size_t n = fsize < PT_MAX_PKL ? (size_t)fsize : PT_MAX_PKL;
  if (!(*pkl = malloc(n ? n : 1)))
    return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
  if (!read_at(fp, 0, *pkl, n))
    return bad(vm, "cannot read the file");
  size_t at = sizeof legacy_magic, used = 0;
  pv *v[4] = {NULL};
  for (int k = 0; k < 4; k++) {
    vm->sp = 0;
    vm->nmemo = 0; /* each pickle has its own memo */
    int rc = run(vm, *pkl + at, n - at, &v[k], &used);
    if (rc)
      return rc;
    at += used;
  }
  const pv *le = dict_get(v[1], "little_endian");
  if (v[0]->k != PV_INT || v[0]->i != 1001 || !le || le->k != PV_BOOL || !le->i)
    return bad(vm, "a legacy file not of protocol 1001, little-endian");
  if (v[3]->k != PV_LIST)
    return bad(vm, "the legacy storage key list is not a list");
  *root = v[2];
  src->keys = v[3];
  int64_t nk = v[3]->n;
  src->off = calloc((size_t)nk + 1, sizeof *src->off);
  src->size = calloc((size_t)nk + 1, sizeof *src->size);
  if (!src->off || !src->size)
    return dfpo_err_set(vm->err, DFPO_ERUNTIME, "out of memory");
  uint64_t pos = at;
  for (int64_t k = 0; k < nk; k++) {
    const pv *key = v[3]->items[k];
    if (key->k != PV_STR)
      return bad(vm, "a legacy storage key is not a string");
    int esize = 0;
    for (const pv *x = vm->all; x && !esize; x = x->next_alloc)
      if (x->k == PV_STORAGE && strcmp(x->key, key->s) == 0)
        esize = x->esize;
    unsigned char c8[8];
    if (!esize || pos > fsize - 8 || !read_at(fp, pos, c8, 8))
      return dfpo_err_set(vm->err, DFPO_EDATA, "%s: legacy storage %s: %s", vm->path, key->s,
                          esize ? "truncated" : "no tensor names it");
    uint64_t numel = le64(c8);
    pos += 8;
    if (numel > (fsize - pos) / (uint64_t)esize)
      return dfpo_err_set(vm->err, DFPO_EDATA,
                          "%s: legacy storage %s: %llu elements run past the end (truncated)",
                          vm->path, key->s, (unsigned long long)numel);
    src->off[k] = pos;
    src->size[k] = numel * (uint64_t)esize;
    pos += src->size[k];
  }
  return DFPO_OK;
}

int pt_open(st_file *f, const char *path, dfpo_err *err) {
  memset(f, 0, sizeof *f);
  f->path = path;
  f->fp = fopen(path, "rb");
  if (!f->fp)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
  struct stat st;
  pt_zip z = {0};
  pt_vm vm = {.path = path, .err = err};
  unsigned char *pkl = NULL;
  int rc;
  if (fstat(fileno(f->fp), &st) != 0) {
    rc = dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
    goto done;
  }
  pv *root = NULL;
  pt_src src = {0};
  unsigned char head[sizeof legacy_magic];
  if (read_at(f->fp, 0, head, sizeof head) && memcmp(head, legacy_magic, sizeof head) == 0) {
    if ((rc = legacy_open(&vm, f->fp, (uint64_t)st.st_size, &pkl, &root, &src)))
      goto done;
    goto entries;
  }
  if (head[0] == 0x80) {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: a pickle, but not torch.save's (no zip, no legacy magic number): "
                      "re-save it with torch.save(state_dict, path) from PyTorch 1.6 or later",
                      path);
    goto done;
  }
  if ((rc = zip_open(&z, f->fp, path, (uint64_t)st.st_size, err)))
    goto done;
  /* <archive>/data.pkl: the first entry of that form */
  const pt_zent *pe = NULL;
  for (int i = 0; i < z.n && !pe; i++) {
    const char *sl = strchr(z.e[i].name, '/');
    if (sl && strcmp(sl, "/data.pkl") == 0)
      pe = &z.e[i];
  }
  if (!pe) {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: a zip without <archive>/data.pkl: not a torch.save file", path);
    goto done;
  }
  char prefix[256];
  size_t pl = strlen(pe->name) - strlen("/data.pkl");
  if (pl >= sizeof prefix) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: archive name too long", path);
    goto done;
  }
  memcpy(prefix, pe->name, pl);
  prefix[pl] = 0;
  if (pe->size > PT_MAX_PKL || !(pkl = malloc(pe->size ? pe->size : 1))) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: data.pkl of %llu bytes is too large", path,
                      (unsigned long long)pe->size);
    goto done;
  }
  if (!read_at(f->fp, pe->off, pkl, pe->size)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: cannot read data.pkl", path);
    goto done;
  }
  size_t used;
  if ((rc = run(&vm, pkl, pe->size, &root, &used)))
    goto done;
  src.z = &z;
  src.prefix = prefix;
entries:
  if (root->k != PV_DICT) {
    rc = bad(&vm, "the pickled object is not a state dict (a dict of tensors)");
    goto done;
  }
  /* the names, one pool in f->hdr (st_close frees it) */
  size_t pool = 1;
  for (int64_t k = 0; k < root->n; k++) {
    const pv *key = root->items[2 * k], *val = root->items[2 * k + 1];
    if (key->k != PV_STR || val->k != PV_TENSOR) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: the state dict holds %s%s%s that is not a tensor; only a flat dict "
                        "of tensors is read",
                        path, key->k == PV_STR ? "'" : "a key", key->k == PV_STR ? key->s : "",
                        key->k == PV_STR ? "'" : "");
      goto done;
    }
    for (int64_t j = 0; j < k; j++) /* Python keeps the last; say so instead */
      if (strcmp(root->items[2 * j]->s, key->s) == 0) {
        rc = dfpo_err_set(err, DFPO_EDATA, "%s: the state dict holds '%s' twice", path, key->s);
        goto done;
      }
    pool += strlen(key->s) + 1;
  }
  f->hdr = malloc(pool);
  f->ents = calloc((size_t)root->n + 1, sizeof *f->ents);
  if (!f->hdr || !f->ents) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  char *w = f->hdr;
  for (int64_t k = 0; k < root->n; k++) {
    const char *name = root->items[2 * k]->s;
    st_entry *e = &f->ents[f->n];
    if ((rc = to_entry(path, &src, name, root->items[2 * k + 1], e, err)))
      goto done;
    size_t L = strlen(name) + 1;
    memcpy(w, name, L);
    e->name = w;
    w += L;
    f->n++;
  }
  f->data_off = 0; /* entries' offsets are the file's */
done:
  free(pkl);
  free(src.off);
  free(src.size);
  vm_free(&vm);
  zip_free(&z);
  if (rc)
    st_close(f);
  return rc;
}
