/* Reading Hugging Face safetensors files (st_internal.h). Little-endian
 * only, as the rest of the checkpoint code. */
#define _FILE_OFFSET_BITS 64
#include "trainer/ops.h"
#include "trainer/st_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_HEADER (100u << 20)

static int dtype_size(const char *d) {
  if (strcmp(d, "F32") == 0)
    return 4;
  if (strcmp(d, "F16") == 0 || strcmp(d, "BF16") == 0)
    return 2;
  return 0;
}

void st_close(st_file *f) {
  if (f->fp)
    fclose(f->fp);
  cJSON_Delete(f->root);
  free(f->hdr);
  free(f->ents);
  memset(f, 0, sizeof *f);
}

/* Fills e from the header entry it; DFPO_OK or DFPO_EDATA. */
static int parse_entry(const st_file *f, const cJSON *it, uint64_t data_len, st_entry *e,
                       dfpo_err *err) {
  const char *path = f->path;
  e->name = it->string;
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
  if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of) ||
      cJSON_GetArraySize(of) != 2)
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': needs dtype, shape and data_offsets",
                        path, it->string);
  e->dtype = dt->valuestring;
  int es = dtype_size(e->dtype);
  e->ndim = cJSON_GetArraySize(sh);
  if (e->ndim > 4)
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': %d dimensions", path, it->string,
                        e->ndim);
  uint64_t numel = 1;
  for (int d = 0; d < e->ndim; d++) {
    const cJSON *x = cJSON_GetArrayItem(sh, d);
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 4e9 ||
        x->valuedouble != floor(x->valuedouble))
      return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': bad shape", path, it->string);
    e->shape[d] = (int64_t)x->valuedouble;
    numel *= (uint64_t)e->shape[d];
    if (numel > ((uint64_t)1 << 40))
      return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': shape too large", path, it->string);
  }
  const cJSON *b = cJSON_GetArrayItem(of, 0), *en = cJSON_GetArrayItem(of, 1);
  if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble != floor(b->valuedouble) ||
      en->valuedouble != floor(en->valuedouble))
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': data_offsets must be two integers", path,
                        it->string);
  if (b->valuedouble < 0 || en->valuedouble < b->valuedouble || en->valuedouble > (double)data_len)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: tensor '%s': data_offsets outside the %llu data bytes", path,
                        it->string, (unsigned long long)data_len);
  e->begin = (uint64_t)b->valuedouble;
  e->end = (uint64_t)en->valuedouble;
  /* only float tensors are checked: others (int64 buffers) are never read */
  if (es && e->end - e->begin != numel * (uint64_t)es)
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': %llu bytes for %llu elements of %s",
                        path, it->string, (unsigned long long)(e->end - e->begin),
                        (unsigned long long)numel, e->dtype);
  return DFPO_OK;
}

static int by_begin(const void *a, const void *b) {
  const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* DFPO_EDATA naming two tensors whose bytes overlap (a writer's bug, or a
 * file made to alias one tensor as another); empty tensors overlap none. */
static int check_overlaps(const st_file *f, dfpo_err *err) {
  const st_entry **v = malloc(sizeof *v * (size_t)(f->n + 1));
  if (!v)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int n = 0, rc = DFPO_OK;
  for (int i = 0; i < f->n; i++)
    if (f->ents[i].end > f->ents[i].begin)
      v[n++] = &f->ents[i];
  qsort(v, (size_t)n, sizeof *v, by_begin);
  for (int i = 1; i < n && !rc; i++)
    if (v[i]->begin < v[i - 1]->end)
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap",
                        f->path, v[i - 1]->name, (unsigned long long)v[i - 1]->begin,
                        (unsigned long long)v[i - 1]->end, v[i]->name,
                        (unsigned long long)v[i]->begin, (unsigned long long)v[i]->end);
  free(v);
  return rc;
}

int st_open(st_file *f, const char *path, dfpo_err *err) {
  memset(f, 0, sizeof *f);
  f->path = path;
  f->fp = fopen(path, "rb");
  if (!f->fp)
    return dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
  int rc = DFPO_OK;
  unsigned char len8[8];
  struct stat st;
  if (fstat(fileno(f->fp), &st) != 0 || fread(len8, 1, 8, f->fp) != 8) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: too short for a safetensors file", path);
    goto fail;
  }
  if (memcmp(len8, "PK\3\4", 4) == 0) { /* a zip: torch.save's format */
    st_close(f);
    return pt_open(f, path, err);
  }
  /* a pickle (the legacy torch.save format) starts with PROTO (0x80) and
   * its version; a safetensors header length can start so too (0x580 is
   * 1408 bytes), so its '{' is looked for first */
  int brace = fgetc(f->fp);
  if (brace != EOF && ungetc(brace, f->fp) == EOF) {
    rc = dfpo_err_errno(err, DFPO_EDATA, errno, "%s", path);
    goto fail;
  }
  if (len8[0] == 0x80 && len8[1] <= 5 && brace != '{') {
    st_close(f);
    return pt_open(f, path, err);
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | len8[i];
  if (hlen < 2 || hlen > ST_MAX_HEADER || hlen > (uint64_t)st.st_size - 8) {
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: safetensors header length %llu does not fit the file (%lld bytes)", path,
                      (unsigned long long)hlen, (long long)st.st_size);
    goto fail;
  }
  uint64_t data_len = (uint64_t)st.st_size - 8 - hlen;
  f->data_off = 8 + hlen;
  f->hdr = malloc(hlen + 1);
  if (!f->hdr || fread(f->hdr, 1, hlen, f->fp) != hlen) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: cannot read the safetensors header", path);
    goto fail;
  }
  f->hdr[hlen] = 0;
  if (dfpo_json_nul_escape(f->hdr, hlen) >= 0) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: \\u0000 in a name of the safetensors header", path);
    goto fail;
  }
  f->root = cJSON_ParseWithLength(f->hdr, hlen);
  if (!cJSON_IsObject(f->root)) {
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: the safetensors header is not a JSON object", path);
    goto fail;
  }
  f->ents = calloc((size_t)cJSON_GetArraySize(f->root) + 1, sizeof *f->ents);
  if (!f->ents) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto fail;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, f->root) {
    if (strcmp(it->string, "__metadata__") == 0) {
      f->meta = it;
      continue;
    }
    if ((rc = parse_entry(f, it, data_len, &f->ents[f->n], err)))
      goto fail;
    f->n++;
  }
  if ((rc = check_overlaps(f, err)))
    goto fail;
  return DFPO_OK;
fail:
  st_close(f);
  return rc;
}

const st_entry *st_find(const st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->ents[i].name, name) == 0)
      return &f->ents[i];
  return NULL;
}

uint64_t st_numel(const st_entry *e) {
  uint64_t n = 1;
  for (int d = 0; d < e->ndim; d++)
    n *= (uint64_t)e->shape[d];
  return n;
}

int st_check_shape(const st_file *f, const st_entry *e, const char *name, int nd,
                   const int64_t *want, const char *cfg_from, dfpo_err *err) {
  int same = e->ndim == nd;
  for (int d = 0; d < nd && same; d++)
    same = e->shape[d] == want[d];
  if (same)
    return DFPO_OK;
  char got[96] = "", exp[96] = "";
  for (int d = 0; d < e->ndim; d++)
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
             (long long)e->shape[d]);
  for (int d = 0; d < nd; d++)
    snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", d ? ", " : "",
             (long long)want[d]);
  return dfpo_err_set(err, DFPO_EDATA,
                      "%s: tensor '%s' has shape [%s], the config (from %s) needs [%s]", f->path,
                      name, got, cfg_from, exp);
}

int st_check_finite(const char *path, const char *name, const float *v, size_t n, dfpo_err *err) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(v[i]))
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s: tensor '%s': element %zu is %s; non-finite weights are refused",
                          path, name, i,
                          isnan(v[i]) ? "NaN"
                          : v[i] > 0  ? "+Inf"
                                      : "-Inf");
  return DFPO_OK;
}

int st_read_f32(st_file *f, const st_entry *e, const char *name, float *dst, dfpo_err *err) {
  int es = dtype_size(e->dtype);
  if (!es)
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': dtype %s (F32, F16 or BF16 expected)",
                        f->path, name, e->dtype);
  size_t nel = (size_t)st_numel(e);
  if (fseeko(f->fp, (off_t)(f->data_off + e->begin), SEEK_SET) != 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': cannot seek to its data", f->path, name);
  if (es == 4) {
    if (fread(dst, 4, nel, f->fp) != nel)
      return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': truncated data", f->path, name);
    return st_check_finite(f->path, name, dst, nel, err);
  }
  uint16_t *h16 = malloc(nel * 2 + 2);
  if (!h16)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (fread(h16, 2, nel, f->fp) != nel) {
    free(h16);
    return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s': truncated data", f->path, name);
  }
  ops_w16_to_f32(dst, h16, nel, strcmp(e->dtype, "BF16") == 0 ? OPS_DTYPE_BF16 : OPS_DTYPE_F16);
  free(h16);
  return st_check_finite(f->path, name, dst, nel, err);
}

/* ---------------------------------------------------------- shard sets */

int st_is_index(const char *path) {
  size_t n = strlen(path);
  return n >= 11 && strcmp(path + n - 11, ".index.json") == 0;
}

void st_set_close(st_set *s) {
  for (int i = 0; i < s->n; i++) {
    st_close(&s->files[i]);
    free(s->paths[i]);
  }
  free(s->files);
  free(s->paths);
  memset(s, 0, sizeof *s);
}

const st_entry *st_set_find(const st_set *s, const char *name, st_file **f) {
  for (int i = 0; i < s->n; i++) {
    const st_entry *e = st_find(&s->files[i], name);
    if (e) {
      if (f)
        *f = &s->files[i];
      return e;
    }
  }
  return NULL;
}

/* Adds the file at path (a heap string s takes over) to s, opened. */
static int set_add(st_set *s, char *path, dfpo_err *err) {
  st_file *files = realloc(s->files, sizeof *files * (size_t)(s->n + 1));
  if (files)
    s->files = files;
  char **paths = files ? realloc(s->paths, sizeof *paths * (size_t)(s->n + 1)) : NULL;
  if (paths)
    s->paths = paths;
  if (!files || !paths) {
    free(path);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  s->paths[s->n] = path;
  int rc = st_open(&s->files[s->n], path, err);
  if (rc) {
    free(path);
    return rc;
  }
  s->n++;
  return DFPO_OK;
}

int st_set_open(st_set *s, const char *path, dfpo_err *err) {
  memset(s, 0, sizeof *s);
  if (!st_is_index(path)) {
    char *p = strdup(path);
    if (!p)
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    int rc = set_add(s, p, err);
    if (rc)
      st_set_close(s); /* the arrays set_add grew */
    return rc;
  }
  char *text = NULL;
  int rc = dfpo_read_file(path, &text, NULL, err);
  if (rc)
    return rc;
  cJSON *root = cJSON_Parse(text);
  free(text);
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(map) || !cJSON_GetArraySize(map)) {
    cJSON_Delete(root);
    return dfpo_err_set(err, DFPO_EDATA, "%s: no \"weight_map\" object naming the shards", path);
  }
  const char *slash = strrchr(path, '/');
  int dl = slash ? (int)(slash - path) + 1 : 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, map) {
    if (!cJSON_IsString(it) || !it->valuestring[0] || strchr(it->valuestring, '/')) {
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: weight_map[\"%s\"] is not the name of a file beside the index", path,
                        it->string);
      break;
    }
    size_t n = (size_t)dl + strlen(it->valuestring) + 1;
    char *shard = malloc(n);
    if (!shard) {
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
      break;
    }
    snprintf(shard, n, "%.*s%s", dl, path, it->valuestring);
    int k = 0;
    while (k < s->n && strcmp(s->paths[k], shard) != 0)
      k++;
    if (k < s->n)
      free(shard);
    else if ((rc = set_add(s, shard, err)))
      break;
    if (!st_find(&s->files[k], it->string)) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s' is not in %s, where the index puts it",
                        path, it->string, s->paths[k]);
      break;
    }
  }
  /* a tensor in two shards would be read from whichever comes first */
  for (int a = 0; !rc && a < s->n; a++)
    for (int i = 0; !rc && i < s->files[a].n; i++)
      for (int b = a + 1; !rc && b < s->n; b++)
        if (st_find(&s->files[b], s->files[a].ents[i].name))
          rc = dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s' is in both %s and %s", path,
                            s->files[a].ents[i].name, s->paths[a], s->paths[b]);
  cJSON_Delete(root);
  if (rc)
    st_set_close(s);
  return rc;
}
