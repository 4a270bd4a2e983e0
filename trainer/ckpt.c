/* The native checkpoints' shared reading and writing (trainer/ckpt_internal.h). */
#define _FILE_OFFSET_BITS 64
#include "trainer/ckpt_internal.h"
#include "trainer/st_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_CHUNK ((size_t)1 << 20)

/* The tensor holding float index i of m's parameter block (for messages),
 * its first index in *start. */
static const char *tensor_holding(const model_t *m, size_t i, size_t *start) {
  model_tensor t0, t;
  int n = m->vt->num_tensors(m);
  if (n <= 0 || m->vt->tensor_at(m, 0, &t0))
    return "?";
  for (int k = n - 1; k >= 0; k--) {
    if (m->vt->tensor_at(m, k, &t))
      continue;
    size_t off = (size_t)(t.param - t0.param);
    if (off <= i) {
      if (start)
        *start = off;
      return t.name;
    }
  }
  return "?";
}

int ckpt_write_floats(FILE *fp, const model_t *m, const float *dev, size_t n) {
  float *buf = malloc(CKPT_CHUNK * sizeof(float));
  if (!buf) {
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < n; i += CKPT_CHUNK) {
    size_t k = n - i < CKPT_CHUNK ? n - i : CKPT_CHUNK;
    m->ops->download(buf, dev + i, k * sizeof(float));
    if (fwrite(buf, sizeof(float), k, fp) != k) {
      free(buf);
      return -1;
    }
  }
  free(buf);
  return 0;
}

int ckpt_write_w16_floats(FILE *fp, const model_t *m, const uint16_t *dev16, size_t n, int dtype) {
  float *buf = malloc(CKPT_CHUNK * sizeof(float));
  uint16_t *h16 = malloc(CKPT_CHUNK * sizeof(uint16_t));
  int rc = buf && h16 ? 0 : -1;
  if (rc)
    errno = ENOMEM;
  for (size_t i = 0; !rc && i < n; i += CKPT_CHUNK) {
    size_t k = n - i < CKPT_CHUNK ? n - i : CKPT_CHUNK;
    m->ops->download(h16, dev16 + i, k * sizeof(uint16_t));
    ops_w16_to_f32(buf, h16, k, dtype);
    rc = fwrite(buf, sizeof(float), k, fp) != k ? -1 : 0;
  }
  free(buf);
  free(h16);
  return rc;
}

int ckpt_read_floats(FILE *fp, const model_t *m, float *dev, size_t n, const char *path,
                     const char *what, dfpo_err *err) {
  float *buf = malloc(CKPT_CHUNK * sizeof(float));
  if (!buf)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; i < n; i += CKPT_CHUNK) {
    size_t k = n - i < CKPT_CHUNK ? n - i : CKPT_CHUNK;
    size_t got = fread(buf, sizeof(float), k, fp);
    if (got != k) {
      free(buf);
      return dfpo_err_set(err, DFPO_EDATA, "%s: truncated in the %s of tensor '%s'", path, what,
                          tensor_holding(m, i + got, NULL));
    }
    for (size_t j = 0; j < k; j++)
      if (!isfinite(buf[j])) {
        /* named by its tensor and its index inside that tensor */
        size_t at = i + j, off = 0;
        const char *tn = tensor_holding(m, at, &off),
                   *what_v = isnan(buf[j]) ? "NaN" : "an infinity";
        free(buf);
        return dfpo_err_set(err, DFPO_EDATA,
                            "%s: the %s of tensor '%s' has %s at element %zu; non-finite values "
                            "are refused",
                            path, what, tn, what_v, at - off);
      }
    m->ops->upload(dev + i, buf, k * sizeof(float));
  }
  free(buf);
  return DFPO_OK;
}

int ckpt_read_tensor(FILE *fp, const model_t *m, float *dev, uint16_t *dev16, int dtype, size_t n,
                     const char *path, const char *what, const char *name, dfpo_err *err) {
  float *buf = malloc(CKPT_CHUNK * sizeof(float));
  uint16_t *h16 = dev16 ? malloc(CKPT_CHUNK * sizeof(uint16_t)) : NULL;
  int rc = buf && (h16 || !dev16) ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (size_t i = 0; !rc && i < n; i += CKPT_CHUNK) {
    size_t k = n - i < CKPT_CHUNK ? n - i : CKPT_CHUNK;
    if (fread(buf, sizeof(float), k, fp) != k) {
      rc =
          dfpo_err_set(err, DFPO_EDATA, "%s: truncated in the %s of tensor '%s'", path, what, name);
      break;
    }
    for (size_t j = 0; j < k && !rc; j++)
      if (!isfinite(buf[j]))
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s: the %s of tensor '%s' has %s at element %zu; non-finite values "
                          "are refused",
                          path, what, name, isnan(buf[j]) ? "NaN" : "an infinity", i + j);
    if (rc)
      break;
    if (dev16) {
      ops_f32_to_w16(h16, buf, k, dtype);
      m->ops->upload(dev16 + i, h16, k * sizeof(uint16_t));
    } else {
      m->ops->upload(dev + i, buf, k * sizeof(float));
    }
  }
  free(buf);
  free(h16);
  return rc;
}

int ckpt_write_base(FILE *fp, const model_t *m, const ckpt_base *b) {
  if (b->wd == OPS_DTYPE_F32)
    return ckpt_write_floats(fp, m, b->params, b->nparams);
  for (int i = 0; i < b->ntensors; i++) {
    const char *name;
    size_t n, off;
    int w16;
    b->tensor(m, i, &name, &n, &off, &w16);
    if (w16 ? ckpt_write_w16_floats(fp, m, b->params16 + off, n, (int)b->wd)
            : ckpt_write_floats(fp, m, b->params + off, n))
      return -1;
  }
  return 0;
}

int ckpt_read_base(FILE *fp, const model_t *m, const ckpt_base *b, int skip, uint64_t nfile,
                   const char *path, dfpo_err *err) {
  if (skip)
    return ckpt_skip_floats(fp, nfile, path, "base's parameters", err);
  if (b->wd == OPS_DTYPE_F32)
    return ckpt_read_floats(fp, m, b->params, b->nparams, path, "parameters", err);
  int rc = DFPO_OK;
  for (int i = 0; i < b->ntensors && !rc; i++) {
    const char *name;
    size_t n, off;
    int w16;
    b->tensor(m, i, &name, &n, &off, &w16);
    rc = ckpt_read_tensor(fp, m, w16 ? NULL : b->params + off, w16 ? b->params16 + off : NULL,
                          (int)b->wd, n, path, "parameters", name, err);
  }
  return rc;
}

int ckpt_save(const model_t *m, const char *path, const void *header, size_t hbytes, size_t n,
              int moments, dfpo_err *err) {
  model_tensor t0;
  m->vt->tensor_at(m, 0, &t0);
  if (moments && (!t0.m1 || !t0.m2))
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the model has no optimiser state to save", path);
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  if (fwrite(header, hbytes, 1, a.fp) != 1 || ckpt_write_floats(a.fp, m, t0.param, n) ||
      (moments && (ckpt_write_floats(a.fp, m, t0.m1, n) || ckpt_write_floats(a.fp, m, t0.m2, n)))) {
    int e = errno;
    dfpo_atomic_abort(&a);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", path);
  }
  return dfpo_atomic_commit(&a, err);
}

int ckpt_load_blocks(FILE *fp, model_t *m, size_t n, int moments, const char *path, dfpo_err *err) {
  model_tensor t0;
  m->vt->tensor_at(m, 0, &t0);
  int rc = ckpt_read_floats(fp, m, t0.param, n, path, "parameters", err);
  if (rc || !moments)
    return rc;
  if ((rc = m->vt->ensure_train(m, err)))
    return rc;
  m->vt->tensor_at(m, 0, &t0);
  if (!(rc = ckpt_read_floats(fp, m, t0.m1, n, path, "first AdamW moment", err)))
    rc = ckpt_read_floats(fp, m, t0.m2, n, path, "second AdamW moment", err);
  return rc;
}

int ckpt_check_size(FILE *fp, const char *path, uint64_t header_bytes, uint64_t nparams,
                    int with_moments, dfpo_err *err) {
  struct stat st;
  uint64_t expect = header_bytes + nparams * sizeof(float) * (with_moments ? 3 : 1);
  if (fstat(fileno(fp), &st) != 0)
    return DFPO_OK; /* the reads will say what is wrong */
  if ((uint64_t)st.st_size > expect)
    return dfpo_err_set(err, DFPO_EDATA, "%s: %lld bytes, expected %llu: trailing data", path,
                        (long long)st.st_size, (unsigned long long)expect);
  if ((uint64_t)st.st_size < expect && nparams > ((uint64_t)1 << 28))
    return dfpo_err_set(err, DFPO_EDATA, "%s: truncated: %lld bytes, expected %llu", path,
                        (long long)st.st_size, (unsigned long long)expect);
  return DFPO_OK;
}

/* w[rows, cols] (host) += lo_scale lo_b^T lo_a (ckpt_st_tensor); -1 with
 * errno ENOMEM when out of memory. */
static int merge_low_rank(const model_t *m, const ckpt_st_tensor *t, float *w) {
  size_t r = (size_t)t->lo_r, R = (size_t)t->rows, C = (size_t)t->cols;
  float *a = malloc(r * C * sizeof(float)), *b = malloc(r * R * sizeof(float));
  double *row = malloc(C * sizeof(double));
  if (!a || !b || !row) {
    free(a), free(b), free(row);
    errno = ENOMEM;
    return -1;
  }
  m->ops->download(a, t->lo_a, r * C * sizeof(float));
  m->ops->download(b, t->lo_b, r * R * sizeof(float));
  for (size_t o = 0; o < R; o++) {
    for (size_t i = 0; i < C; i++)
      row[i] = 0.0;
    for (size_t k = 0; k < r; k++) {
      double bk = b[k * R + o];
      for (size_t i = 0; i < C; i++)
        row[i] += bk * a[k * C + i];
    }
    for (size_t i = 0; i < C; i++)
      w[o * C + i] = (float)((double)w[o * C + i] + (double)t->lo_scale * row[i]);
  }
  free(a), free(b), free(row);
  return 0;
}

int ckpt_write_safetensors(const model_t *m, const char *path, cJSON *meta, const ckpt_st_tensor *t,
                           int n, dfpo_err *err) {
  cJSON *root = cJSON_CreateObject();
  if (meta)
    cJSON_AddItemToObject(root, "__metadata__", meta);
  uint64_t off = 0;
  size_t maxn = 0;
  for (int k = 0; k < n; k++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    size_t nel = (size_t)t[k].rows * t[k].cols;
    if (t[k].ndim == 1) {
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)nel));
    } else {
      cJSON_AddItemToArray(sh, cJSON_CreateNumber(t[k].transpose ? t[k].cols : t[k].rows));
      cJSON_AddItemToArray(sh, cJSON_CreateNumber(t[k].transpose ? t[k].rows : t[k].cols));
    }
    cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + nel * 4)));
    cJSON_AddItemToObject(root, t[k].name, e);
    off += nel * 4;
    if (nel > maxn)
      maxn = nel;
  }
  char *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  float *buf = malloc((2 * maxn + 1) * sizeof(float));
  dfpo_atomic a;
  int rc = json && buf ? dfpo_atomic_open(&a, path, err)
                       : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (rc) {
    free(json);
    free(buf);
    return rc;
  }
  size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  int bad = fwrite(len8, 1, 8, a.fp) != 8 || fwrite(json, 1, jl, a.fp) != jl;
  for (size_t i = jl; i < padded && !bad; i++)
    bad = fputc(' ', a.fp) == EOF;
  for (int k = 0; k < n && !bad; k++) {
    size_t nel = (size_t)t[k].rows * t[k].cols;
    float *src = buf + maxn;
    if (t[k].dev16) { /* widened through the first half of buf */
      m->ops->download(buf, t[k].dev16, nel * sizeof(uint16_t));
      ops_w16_to_f32(src, (const uint16_t *)buf, nel, t[k].dtype);
    } else {
      m->ops->download(src, t[k].dev, nel * sizeof(float));
    }
    if (t[k].lo_r > 0 && (bad = merge_low_rank(m, &t[k], src)) != 0)
      break;
    if (t[k].transpose) { /* [rows, cols] -> [cols, rows] */
      for (int r = 0; r < t[k].rows; r++)
        for (int c = 0; c < t[k].cols; c++)
          buf[(size_t)c * t[k].rows + r] = src[(size_t)r * t[k].cols + c];
      src = buf;
    }
    bad = fwrite(src, 4, nel, a.fp) != nel;
  }
  free(json);
  free(buf);
  if (bad) {
    int e = errno;
    dfpo_atomic_abort(&a);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", path);
  }
  return dfpo_atomic_commit(&a, err);
}

int ckpt_write_json(const char *path, const cJSON *o, dfpo_err *err) {
  char *text = cJSON_Print(o);
  if (!text)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  size_t len = strlen(text);
  text[len] = '\n'; /* cJSON's buffer has room: it holds the NUL there */
  int rc = dfpo_atomic_write_file(path, text, len + 1, err);
  free(text);
  return rc;
}

int ckpt_write_peft_config(const char *weights_path, int r, float alpha, const char *const *targets,
                           int nt, int fan_in_fan_out, dfpo_err *err) {
  char cpath[4096];
  const char *slash = strrchr(weights_path, '/');
  int rc = dfpo_path_fmt(cpath, sizeof cpath, err, "%.*s%sadapter_config.json",
                         slash ? (int)(slash - weights_path) : 0, weights_path, slash ? "/" : "");
  if (rc)
    return rc;
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "peft_type", "LORA");
  cJSON_AddStringToObject(c, "task_type", "CAUSAL_LM");
  cJSON_AddNullToObject(c, "base_model_name_or_path");
  cJSON_AddNullToObject(c, "revision");
  cJSON_AddNumberToObject(c, "r", r);
  cJSON_AddNumberToObject(c, "lora_alpha", alpha);
  cJSON_AddNumberToObject(c, "lora_dropout", 0);
  cJSON *tm = cJSON_AddArrayToObject(c, "target_modules");
  for (int k = 0; k < nt; k++)
    cJSON_AddItemToArray(tm, cJSON_CreateString(targets[k]));
  cJSON_AddBoolToObject(c, "fan_in_fan_out", fan_in_fan_out);
  cJSON_AddStringToObject(c, "bias", "none");
  cJSON_AddNullToObject(c, "modules_to_save");
  cJSON_AddBoolToObject(c, "init_lora_weights", 1);
  cJSON_AddBoolToObject(c, "inference_mode", 1);
  rc = ckpt_write_json(cpath, c, err);
  cJSON_Delete(c);
  return rc;
}

int ckpt_into_arch(const ckpt_dest *to, const model_vtable *vt, const char *kind, const char *path,
                   dfpo_err *err) {
  if (to->into && to->into->vt != vt)
    return dfpo_err_set(err, DFPO_EDATA, "%s: %s, not one of the %s model it is read into", path,
                        kind, to->into->cfg.arch);
  return DFPO_OK;
}

int ckpt_into_fits(const ckpt_dest *to, int same_config, int borrowed, int file_lora, int into_rank,
                   const char *path, dfpo_err *err) {
  if (!to->into)
    return DFPO_OK;
  const char *arch = to->into->cfg.arch;
  if (!same_config)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: a checkpoint of another %s model (its header's config or head is not "
                        "the model's it is read into)",
                        path, arch);
  if (file_lora != (into_rank > 0))
    return dfpo_err_set(err, DFPO_EDATA,
                        file_lora ? "%s: a checkpoint with LoRA adapters; the %s model it is read "
                                    "into has none"
                                  : "%s: a checkpoint without LoRA adapters; the %s model it is "
                                    "read into has them",
                        path, arch);
  if (borrowed && !to->adapters_only)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: the %s model is a view (its base is another model's): only its "
                        "adapters can be read into it",
                        path, arch);
  return DFPO_OK;
}

int ckpt_lora_fits(const ckpt_lora_section *ls, int rank, float alpha, uint32_t targets,
                   const char *names, const char *path, dfpo_err *err) {
  if (ls->rank == rank && ls->alpha == alpha && ls->targets == targets)
    return DFPO_OK;
  return dfpo_err_set(err, DFPO_EDATA,
                      "%s: LoRA adapters of rank %d, alpha %g on %s; the model's are rank %d, "
                      "alpha %g, targets %#x",
                      path, ls->rank, (double)ls->alpha, names, rank, (double)alpha, targets);
}

int ckpt_skip_floats(FILE *fp, uint64_t n, const char *path, const char *what, dfpo_err *err) {
  struct stat st;
  off_t at = ftello(fp);
  if (fstat(fileno(fp), &st) != 0 || at < 0 || (uint64_t)at > (uint64_t)st.st_size ||
      (uint64_t)st.st_size - (uint64_t)at < n * sizeof(float) ||
      fseeko(fp, (off_t)(n * sizeof(float)), SEEK_CUR) != 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: truncated in the %s", path, what);
  return DFPO_OK;
}

int model_save_tensors(const model_t *m, const char *path, dfpo_err *err) {
  int n = m->vt->num_tensors(m), rc = DFPO_OK;
  ckpt_st_tensor *t = calloc(n > 0 ? (size_t)n : 1, sizeof *t);
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  for (int i = 0; i < n && !rc; i++) {
    model_tensor mt;
    if ((rc = model_tensor_at(m, i, &mt, err)))
      break;
    if (!mt.param)
      rc = dfpo_err_set(err, DFPO_EUSAGE, "%s: tensor %s is kept in 16 bits: no fp32 to save", path,
                        mt.name);
    t[i] = (ckpt_st_tensor){
        .name = mt.name, .dev = mt.param, .rows = mt.rows, .cols = mt.cols, .ndim = 2};
  }
  if (!rc) {
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "format", "dfpo tensors");
    cJSON_AddStringToObject(meta, "arch", m->cfg.arch);
    rc = ckpt_write_safetensors(m, path, meta, t, n, err);
  }
  free(t);
  return rc;
}

int model_load_tensors(model_t *m, const char *path, dfpo_err *err) {
  st_file f;
  int rc = st_open(&f, path, err), n = m->vt->num_tensors(m);
  if (rc)
    return rc;
  if (f.n != n)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: %d tensors where the %s model has %d", path, f.n,
                      m->cfg.arch, n);
  float *buf = NULL;
  size_t cap = 0;
  for (int i = 0; i < n && !rc; i++) {
    model_tensor mt;
    if ((rc = model_tensor_at(m, i, &mt, err)))
      break;
    const st_entry *e = st_find(&f, mt.name);
    int64_t want[2] = {mt.rows, mt.cols};
    size_t nel = (size_t)mt.rows * mt.cols;
    if (!mt.param)
      rc = dfpo_err_set(err, DFPO_EUSAGE, "%s: tensor %s is kept in 16 bits", path, mt.name);
    else if (!e)
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: no tensor %s, which the %s model has", path, mt.name,
                        m->cfg.arch);
    else if (!(rc = st_check_shape(&f, e, mt.name, 2, want, "the model", err)) &&
             !(rc = dfpo_grow(&buf, &cap, nel ? nel : 1, sizeof *buf, 1024, DFPO_NOCAP, err)) &&
             !(rc = st_read_f32(&f, e, mt.name, buf, err)))
      m->ops->upload(mt.param, buf, nel * sizeof *buf);
  }
  free(buf);
  st_close(&f);
  return rc;
}

/* ------------------------------------------------- peft's adapter folders */

void ckpt_peft_close(ckpt_peft *p) {
  if (p->st) {
    st_close(p->st);
    free(p->st);
  }
  cJSON_Delete(p->config);
  memset(p, 0, sizeof *p);
}

/* rsLoRA (peft's use_rslora): peft scales the adapters' output by
 * lora_alpha / sqrt(r), a double rounded to float for the multiply; the
 * engine by alpha / r in float. The alpha whose quotient is that float:
 * scale x r, or a float beside it where the division rounds away (for
 * about 1 in 10 of the ranks 1-256 with the usual alphas none is, and the
 * nearest, within one ulp of peft's scale, is taken). */
static float rslora_alpha(double lora_alpha, int r) {
  float want = (float)(lora_alpha / sqrt((double)r)), a = (float)((double)want * r);
  float up = a, down = a;
  for (int i = 0; i < 4; i++) {
    if (up / (float)r == want)
      return up;
    if (down / (float)r == want)
      return down;
    up = nextafterf(up, INFINITY);
    down = nextafterf(down, 0.0f);
  }
  return a;
}

/* Whether adapter_config.json's key holds something other than its
 * "nothing" (absent, null, false, "", "none", an empty list or object). */
static int peft_set(const cJSON *c, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
  if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v))
    return 0;
  if (cJSON_IsString(v))
    return v->valuestring[0] && strcmp(v->valuestring, "none") != 0;
  if (cJSON_IsArray(v) || cJSON_IsObject(v))
    return cJSON_GetArraySize(v) > 0;
  return 1;
}

int ckpt_peft_open(ckpt_peft *p, const char *dir, dfpo_err *err) {
  memset(p, 0, sizeof *p);
  char path[4200];
  int rc = dfpo_path_fmt(p->dir, sizeof p->dir, err, "%s", dir);
  if (!rc)
    rc = dfpo_path_fmt(path, sizeof path, err, "%s/adapter_config.json", dir);
  if (!rc)
    rc = dfpo_path_fmt(p->file, sizeof p->file, err, "%s/adapter_model.safetensors", dir);
  /* peft's older save: torch.save's adapter_model.bin (st_open reads it) */
  if (!rc && access(p->file, F_OK) != 0)
    rc = dfpo_path_fmt(p->file, sizeof p->file, err, "%s/adapter_model.bin", dir);
  char *text = NULL;
  if (!rc && (rc = dfpo_read_file(path, &text, NULL, err)))
    rc = dfpo_err_prefix(err, "peft adapters");
  if (rc)
    return rc;
  p->config = cJSON_Parse(text);
  free(text);
  const cJSON *c = p->config, *type = cJSON_GetObjectItemCaseSensitive(c, "peft_type"),
              *r = cJSON_GetObjectItemCaseSensitive(c, "r"),
              *alpha = cJSON_GetObjectItemCaseSensitive(c, "lora_alpha");
  p->target_modules = cJSON_GetObjectItemCaseSensitive(c, "target_modules");
  static const char *const unread[] = {"use_dora",     "modules_to_save", "layers_to_transform",
                                       "rank_pattern", "alpha_pattern",   "layers_pattern"};
  if (!cJSON_IsObject(c))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: not a JSON object", path);
  else if (!cJSON_IsString(type) || strcmp(type->valuestring, "LORA") != 0)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: peft_type %s: only LORA adapters are read", path,
                      cJSON_IsString(type) ? type->valuestring : "missing");
  else if (!cJSON_IsNumber(r) || r->valuedouble != (int)r->valuedouble || r->valueint < 1)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: r is not a positive integer", path);
  else if (!cJSON_IsNumber(alpha) || !(alpha->valuedouble > 0) || !isfinite(alpha->valuedouble))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: lora_alpha is not a positive number", path);
  else if (!(cJSON_IsString(p->target_modules) && p->target_modules->valuestring[0]) &&
           !(cJSON_IsArray(p->target_modules) && cJSON_GetArraySize(p->target_modules) > 0))
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: target_modules is neither a list of module names nor a regular "
                      "expression",
                      path);
  else if (peft_set(c, "bias"))
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: bias \"%s\": adapters with their own biases are not read (only "
                      "\"none\")",
                      path,
                      cJSON_GetObjectItemCaseSensitive(c, "bias")->valuestring
                          ? cJSON_GetObjectItemCaseSensitive(c, "bias")->valuestring
                          : "?");
  for (size_t i = 0; !rc && i < sizeof unread / sizeof unread[0]; i++)
    if (peft_set(c, unread[i]))
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: %s is set: the engine computes plain LoRA and rsLoRA only (W x + "
                        "(lora_alpha / r) B A x, or / sqrt(r), on every layer)",
                        path, unread[i]);
  const cJSON *t = NULL;
  if (!rc && cJSON_IsArray(p->target_modules))
    cJSON_ArrayForEach(t, p->target_modules) {
      if (!rc && (!cJSON_IsString(t) || !t->valuestring[0]))
        rc = dfpo_err_set(err, DFPO_EDATA, "%s: target_modules holds something not a name", path);
    }
  if (!rc) {
    p->r = r->valueint;
    p->alpha = peft_set(c, "use_rslora") ? rslora_alpha(alpha->valuedouble, p->r)
                                         : (float)alpha->valuedouble;
    if (!(p->st = calloc(1, sizeof *p->st)))
      rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    else if ((rc = st_open(p->st, p->file, err))) {
      free(p->st);
      p->st = NULL;
    }
  }
  if (rc)
    ckpt_peft_close(p);
  return rc;
}

/* peft's check_target_module_exists for one module name: a regex matches
 * the whole name; a list entry equals it or is a dotted suffix of it. */
static int peft_matches(const cJSON *tm, const char *name, pcre2_code *re) {
  if (re) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int hit = md && pcre2_match(re, (PCRE2_SPTR)name, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL) >= 0;
    pcre2_match_data_free(md);
    return hit;
  }
  size_t n = strlen(name);
  const cJSON *t;
  cJSON_ArrayForEach(t, tm) {
    size_t k = strlen(t->valuestring);
    if (k == n ? !strcmp(name, t->valuestring)
               : k < n && name[n - k - 1] == '.' && !strcmp(name + n - k, t->valuestring))
      return 1;
  }
  return 0;
}

int ckpt_peft_targets(const ckpt_peft *p, const char *const *names, int n, int n_layer,
                      void (*module)(const void *ctx, int l, int k, char *buf, size_t len),
                      const void *ctx, unsigned *bits, dfpo_err *err) {
  *bits = 0;
  pcre2_code *re = NULL;
  if (cJSON_IsString(p->target_modules)) {
    int ec;
    PCRE2_SIZE at;
    /* fullmatch: anchored at both ends */
    re = pcre2_compile((PCRE2_SPTR)p->target_modules->valuestring, PCRE2_ZERO_TERMINATED,
                       PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &at, NULL);
    if (!re)
      return dfpo_err_set(err, DFPO_EDATA,
                          "%s/adapter_config.json: target_modules \"%s\": not a regular "
                          "expression this build reads (at offset %zu)",
                          p->dir, p->target_modules->valuestring, (size_t)at);
  }
  int rc = DFPO_OK;
  char buf[256];
  for (int l = 0; l < n_layer && !rc; l++) {
    unsigned b = 0;
    for (int k = 0; k < n; k++) {
      module(ctx, l, k, buf, sizeof buf);
      if (peft_matches(p->target_modules, buf, re))
        b |= 1u << k;
    }
    if (l == 0)
      *bits = b;
    else if (b != *bits)
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s/adapter_config.json: target_modules adapt layer %d otherwise than "
                        "layer 0: adapters on some layers only are not read",
                        p->dir, l);
  }
  pcre2_code_free(re);
  if (!rc && !*bits) {
    char known[512];
    model_lora_target_list(n >= 32 ? ~0u : (1u << n) - 1, names, n, known, sizeof known);
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s/adapter_config.json: target_modules match none of the model's linear "
                      "layers (%s)",
                      p->dir, known);
  }
  return rc;
}

int ckpt_peft_read(ckpt_peft *p, const char *name, int rows, int cols, int transposed, float *host,
                   dfpo_err *err) {
  const st_entry *e = st_find(p->st, name);
  if (!e)
    return dfpo_err_set(err, DFPO_EDATA, "%s: no tensor %s, which adapter_config.json asks for",
                        p->file, name);
  int64_t want[2] = {transposed ? cols : rows, transposed ? rows : cols};
  size_t n = (size_t)rows * cols;
  float *buf = transposed ? malloc(n * sizeof *buf) : host;
  int rc = buf ? DFPO_OK : dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  if (!rc && !(rc = st_check_shape(p->st, e, name, 2, want, "adapter_config.json's r", err)) &&
      !(rc = st_read_f32(p->st, e, name, buf, err)) && transposed)
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++)
        host[(size_t)i * cols + j] = buf[(size_t)j * rows + i];
  if (transposed)
    free(buf);
  p->used += !rc;
  return rc;
}

int ckpt_peft_start(ckpt_peft *p, model_t *m, const char *dir, const char *const *names, int n,
                    int n_layer,
                    void (*module)(const void *ctx, int l, int k, char *buf, size_t len),
                    const void *ctx, size_t extra, float **host, dfpo_err *err) {
  *host = NULL;
  unsigned bits;
  char targets[512];
  int rc = ckpt_peft_open(p, dir, err);
  if (rc)
    return rc;
  if (!(rc = ckpt_peft_targets(p, names, n, n_layer, module, ctx, &bits, err))) {
    model_lora_target_list(bits, names, n, targets, sizeof targets);
    model_lora_config c = {p->r, p->alpha, targets};
    rc = model_add_lora(m, &c, 0, err);
  }
  size_t np = rc ? 0 : model_num_params(m);
  if (!rc && !(*host = malloc((np + extra) * sizeof(float))))
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  model_tensor t0;
  if (!rc && !(rc = model_tensor_at(m, 0, &t0, err)))
    m->ops->download(*host, t0.param, np * sizeof(float));
  if (rc) {
    free(*host);
    *host = NULL;
    ckpt_peft_close(p);
  }
  return rc;
}

int ckpt_peft_finish(ckpt_peft *p, model_t *m, float *host, int rc, dfpo_err *err) {
  model_tensor t0;
  if (!rc && !(rc = ckpt_peft_all_read(p, err)) && !(rc = model_tensor_at(m, 0, &t0, err)))
    m->ops->upload(t0.param, host, model_num_params(m) * sizeof(float));
  free(host);
  ckpt_peft_close(p);
  return rc;
}

int ckpt_peft_all_read(const ckpt_peft *p, dfpo_err *err) {
  if (p->used == p->st->n)
    return DFPO_OK;
  /* a name no read took: each read name is found once, so count them */
  for (int i = 0; i < p->st->n; i++) {
    const char *nm = p->st->ents[i].name;
    if (!strstr(nm, ".lora_A.weight") && !strstr(nm, ".lora_B.weight"))
      return dfpo_err_set(err, DFPO_EDATA, "%s: tensor %s is not a LoRA adapter this build reads",
                          p->file, nm);
  }
  return dfpo_err_set(err, DFPO_EDATA,
                      "%s: %d tensors, of which adapter_config.json's targets use %d: the file "
                      "adapts modules its config does not name, or that this build does not "
                      "adapt (an embedding, the LM head)",
                      p->file, p->st->n, p->used);
}
