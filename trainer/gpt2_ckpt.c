/* GPT-2 checkpoints: the native format and Hugging Face model.safetensors.
 * Both are little-endian (the only byte order this code runs on). */
#define _FILE_OFFSET_BITS 64
#include "trainer/ckpt_internal.h"
#include "trainer/gpt2_internal.h"
#include "trainer/st_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NATIVE_MAGIC GPT2_NATIVE_MAGIC
#define NATIVE_VERSION 1u
/* version 2: version 1's layout, then the LoRA adapter section (flag 2) */
#define NATIVE_VERSION_LORA 2u
#define NATIVE_HEADER 64u
#define NATIVE_FLAG_OPT 1u
#define NATIVE_FLAG_LORA 2u
#define LORA_MAGIC CKPT_LORA_MAGIC
#define LORA_HEADER 32u
/* extra tensors named one by one before the rest are counted */
#define GPT2_EXTRA_WARN 5

typedef struct native_header {
  char magic[8];
  uint32_t version, header_bytes;
  int32_t n_layer, n_head, n_embd, vocab_size, n_ctx, head, n_classes;
  int32_t step;
  uint32_t flags, reserved;
  uint64_t nparams;
} native_header;
_Static_assert(sizeof(native_header) == NATIVE_HEADER, "native header is 64 bytes");

/* The LoRA adapter section (trainer/ckpt_internal.h), its targets bit k
 * gpt2_lora_names[k]. */
typedef ckpt_lora_section lora_section;

/* The parameter block as the checkpoint code walks it (ckpt_base): in the
 * file's fp32 layout (the tensors in order), a model with 16-bit weights
 * writing them widened (exact), so its file is the fp32 model with those
 * values (loaded in fp32, or back into 16 bits by model_load_as: the same
 * bits). */
static void base_tensor(const model_t *mm, int i, const char **name, size_t *n, size_t *off,
                        int *w16) {
  const gpt2_tensor *t = &gpt2_of_const(mm)->tensors[i];
  *name = t->name, *n = (size_t)t->rows * t->cols, *off = t->off, *w16 = t->w16;
}
static ckpt_base base_of(const gpt2_model *m) {
  return (ckpt_base){m->params, m->params16, m->nparams, m->wdtype, m->ntensors, base_tensor};
}

int gpt2_save(gpt2_model *m, const char *path, int with_optimizer, dfpo_err *err) {
  const gpt2_lora *z = &m->lora;
  native_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, NATIVE_MAGIC, 8);
  h.version = z->r ? NATIVE_VERSION_LORA : NATIVE_VERSION;
  h.header_bytes = NATIVE_HEADER;
  h.n_layer = m->cfg.n_layer;
  h.n_head = m->cfg.n_head;
  h.n_embd = m->cfg.n_embd;
  h.vocab_size = m->cfg.vocab_size;
  h.n_ctx = m->cfg.n_ctx;
  h.head = m->cfg.head;
  h.n_classes = m->cfg.n_classes;
  h.step = m->base.step;
  with_optimizer = with_optimizer && (z->r ? z->train_block != NULL : m->train_block != NULL);
  h.flags = (with_optimizer ? NATIVE_FLAG_OPT : 0u) | (z->r ? NATIVE_FLAG_LORA : 0u);
  h.nparams = m->nparams;
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  lora_section ls;
  memset(&ls, 0, sizeof ls);
  memcpy(ls.magic, LORA_MAGIC, 8);
  ls.rank = z->r;
  ls.alpha = z->alpha;
  ls.targets = z->targets;
  ls.nparams = z->nparams;
  ckpt_base b = base_of(m);
  if (fwrite(&h, sizeof h, 1, a.fp) != 1 || ckpt_write_base(a.fp, &m->base, &b) ||
      (with_optimizer && !z->r &&
       (ckpt_write_floats(a.fp, &m->base, m->m, m->nparams) ||
        ckpt_write_floats(a.fp, &m->base, m->v, m->nparams))) ||
      (z->r && (fwrite(&ls, sizeof ls, 1, a.fp) != 1 ||
                ckpt_write_floats(a.fp, &m->base, z->params, z->nparams) ||
                (with_optimizer && (ckpt_write_floats(a.fp, &m->base, z->m, z->nparams) ||
                                    ckpt_write_floats(a.fp, &m->base, z->v, z->nparams)))))) {
    int e = errno;
    dfpo_atomic_abort(&a);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", path);
  }
  return dfpo_atomic_commit(&a, err);
}

/* n adapter floats of the LoRA section into dev (backend memory), refusing
 * a short read or a non-finite value with the adapter tensor named. */
static int read_lora_floats(FILE *fp, const gpt2_model *m, float *dev, const char *path,
                            const char *what, dfpo_err *err) {
  const gpt2_lora *z = &m->lora;
  size_t n = z->nparams;
  float *buf = malloc(n * sizeof(float));
  if (!buf)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  size_t got = fread(buf, sizeof(float), n, fp), bad = got;
  for (size_t j = 0; j < got && bad == got; j++)
    if (!isfinite(buf[j]))
      bad = j;
  size_t at = bad < n ? bad : n - 1;
  int k = z->ntensors - 1;
  while (k > 0 && z->tensors[k].off > at)
    k--;
  const char *tn = z->tensors[k].name;
  int rc = DFPO_OK;
  if (bad < got)
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: LoRA adapter section damaged: the %s of adapter '%s' has %s at element "
                      "%zu; non-finite values are refused",
                      path, what, tn, isnan(buf[bad]) ? "NaN" : "an infinity",
                      bad - z->tensors[k].off);
  else if (got != n)
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: LoRA adapter section truncated in the %s of adapter '%s'", path, what,
                      tn);
  else
    m->base.ops->upload(dev, buf, n * sizeof(float));
  free(buf);
  return rc;
}

/* The LoRA section of a version-2 file, after the base's parameters: adds
 * the adapters its header describes to m (in place: m's own, which must be
 * the same rank, alpha and targets) and reads them (and with
 * NATIVE_FLAG_OPT their AdamW moments); the file must end there. */
static int load_lora_section(FILE *fp, gpt2_model *m, const char *path, int with_opt, int in_place,
                             dfpo_err *err) {
  lora_section ls;
  if (fread(&ls, sizeof ls, 1, fp) != 1)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: LoRA adapter section truncated: its %u-byte header is missing", path,
                        LORA_HEADER);
  if (memcmp(ls.magic, LORA_MAGIC, 8) != 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: LoRA adapter section damaged (bad magic)", path);
  if (ls.rank < 1 || ls.rank > m->cfg.n_embd || !(ls.alpha > 0.0f) || !isfinite(ls.alpha) ||
      ls.targets == 0 || ls.targets >= (1u << GPT2_LORA_N) || ls.reserved)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: LoRA adapter section damaged: rank %d (n_embd %d), alpha %g, target "
                        "bits %#x",
                        path, ls.rank, m->cfg.n_embd, (double)ls.alpha, ls.targets);
  char targets[96];
  gpt2_lora_target_list(ls.targets, targets, sizeof targets);
  model_lora_config c = {ls.rank, ls.alpha, targets};
  dfpo_err why;
  dfpo_err_clear(&why);
  int rc;
  if (in_place &&
      (rc = ckpt_lora_fits(&ls, m->lora.r, m->lora.alpha, m->lora.targets, targets, path, err)))
    return rc;
  if (!in_place && model_add_lora(&m->base, &c, 0, &why))
    return dfpo_err_set(err, DFPO_EDATA, "%s: LoRA adapter section: %s", path, why.msg);
  if (ls.nparams != m->lora.nparams)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: LoRA adapter section damaged: it says %llu parameters, rank %d on "
                        "%s has %llu",
                        path, (unsigned long long)ls.nparams, ls.rank, targets,
                        (unsigned long long)m->lora.nparams);
  if ((rc = read_lora_floats(fp, m, m->lora.params, path, "parameters", err)))
    return rc;
  /* a view does not train: its file's moments are passed over */
  if (with_opt && m->params_borrowed)
    rc = ckpt_skip_floats(fp, 2 * (uint64_t)m->lora.nparams, path, "adapters' AdamW moments", err);
  else if (with_opt && !(rc = gpt2_ensure_train(m, err)) &&
           !(rc = read_lora_floats(fp, m, m->lora.m, path, "first AdamW moment", err)))
    rc = read_lora_floats(fp, m, m->lora.v, path, "second AdamW moment", err);
  if (rc)
    return rc;
  if (fgetc(fp) != EOF)
    return dfpo_err_set(err, DFPO_EDATA, "%s: trailing data after the LoRA adapter section", path);
  return DFPO_OK;
}

int gpt2_load_native(model_t **out, const char *path, FILE *fp, const ckpt_dest *to,
                     dfpo_err *err) {
  *out = NULL;
  native_header h;
  if (fread(&h, sizeof h, 1, fp) != 1)
    return dfpo_err_set(err, DFPO_EDATA, "%s: truncated header (%u bytes expected)", path,
                        NATIVE_HEADER);
  if (memcmp(h.magic, NATIVE_MAGIC, 8) != 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a dfpo checkpoint (bad magic)", path);
  if (h.version != NATIVE_VERSION && h.version != NATIVE_VERSION_LORA)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: checkpoint version %u, this build reads versions %u and %u", path,
                        h.version, NATIVE_VERSION, NATIVE_VERSION_LORA);
  /* version 2 is the file with a LoRA section, and only it */
  int lora = h.version == NATIVE_VERSION_LORA;
  if (h.header_bytes != NATIVE_HEADER || (h.flags & ~(NATIVE_FLAG_OPT | NATIVE_FLAG_LORA)) ||
      !!(h.flags & NATIVE_FLAG_LORA) != lora || h.step < 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: corrupt header (size %u, flags %#x, step %d)", path,
                        h.header_bytes, h.flags, h.step);
  gpt2_config cfg = {h.n_layer, h.n_head, h.n_embd, h.vocab_size, h.n_ctx, h.head, h.n_classes};
  int rc = gpt2_config_check(&cfg, err);
  if (rc)
    return dfpo_err_prefix(err, "%s: header config", path);
  /* the sizes must agree before anything is allocated */
  uint64_t C = (uint64_t)cfg.n_embd, K = (uint64_t)gpt2_head_rows(&cfg);
  uint64_t want = (uint64_t)cfg.vocab_size * C + (uint64_t)cfg.n_ctx * C +
                  (uint64_t)cfg.n_layer * (12 * C * C + 13 * C) + 2 * C + (K ? K * C + K : 0);
  if (h.nparams != want)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: header says %llu parameters, its config has %llu: config and tensors "
                        "do not match",
                        path, (unsigned long long)h.nparams, (unsigned long long)want);
  struct stat st;
  /* with adapters, the base's part (no AdamW moments) and then at least
   * the section's header; the section's end is checked after it */
  uint64_t expect = NATIVE_HEADER + want * sizeof(float) * ((h.flags & 1) && !lora ? 3 : 1) +
                    (lora ? LORA_HEADER : 0);
  if (!lora && fstat(fileno(fp), &st) == 0 && (uint64_t)st.st_size > expect)
    return dfpo_err_set(err, DFPO_EDATA, "%s: %lld bytes, expected %llu: trailing data", path,
                        (long long)st.st_size, (unsigned long long)expect);
  /* a short file is reported while reading, naming the tensor where its
   * data ends; but not at the price of allocating a huge model first */
  if (fstat(fileno(fp), &st) == 0 && (uint64_t)st.st_size < expect && want > ((uint64_t)1 << 28))
    return dfpo_err_set(err, DFPO_EDATA, "%s: truncated: %lld bytes, expected %llu", path,
                        (long long)st.st_size, (unsigned long long)expect);
  gpt2_model *m;
  if ((rc = ckpt_into_arch(to, &gpt2_vtable, "a GPT-2 checkpoint", path, err)))
    return rc;
  if (to->into) {
    m = gpt2_of(to->into);
    if ((rc = ckpt_into_fits(to, !memcmp(&cfg, &m->cfg, sizeof cfg), m->params_borrowed, lora,
                             m->lora.r, path, err)))
      return rc;
  } else if ((rc = gpt2_create_as(&m, &cfg, to->wd, err))) {
    return dfpo_err_prefix(err, "%s", path);
  }
  ckpt_base b = base_of(m);
  ops_dtype wd = m->wdtype;
  rc = ckpt_read_base(fp, &m->base, &b, to->adapters_only, h.nparams, path, err);
  if (!rc && lora)
    rc = load_lora_section(fp, m, path, h.flags & NATIVE_FLAG_OPT, to->into != NULL, err);
  /* a model in 16 bits is frozen: the AdamW moments are not read */
  else if (!rc && (h.flags & 1) && wd == OPS_DTYPE_F32) {
    if (!(rc = gpt2_ensure_train(m, err)) &&
        !(rc = ckpt_read_floats(fp, &m->base, m->m, m->nparams, path, "first AdamW moment", err)))
      rc = ckpt_read_floats(fp, &m->base, m->v, m->nparams, path, "second AdamW moment", err);
  }
  if (rc) {
    if (!to->into)
      gpt2_destroy(m);
    return rc;
  }
  m->base.step = h.step;
  *out = &m->base;
  return DFPO_OK;
}

/* ------------------------------------------------------- safetensors */

static const char *strip_prefix(const char *name) {
  return strncmp(name, "transformer.", 12) == 0 ? name + 12 : name;
}

/* o[key] as an int in *v: 1 when it is there (a JSON integer, or a string
 * of decimal digits as safetensors' __metadata__ holds), 0 when absent, -1
 * (DFPO_EDATA in err, naming the key) when it is there but not an integer
 * in [0, INT_MAX]: "4294967298" must not become 2. */
static int json_int(const cJSON *o, const char *key, int *v, const char *from, dfpo_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!x)
    return 0;
  if (cJSON_IsNumber(x)) {
    double d = x->valuedouble;
    if (d >= 0 && d <= INT_MAX && d == floor(d)) {
      *v = (int)d;
      return 1;
    }
  } else if (cJSON_IsString(x)) {
    const char *s = x->valuestring;
    char *end;
    errno = 0;
    long long l = s[0] >= '0' && s[0] <= '9' ? strtoll(s, &end, 10) : -1;
    if (l >= 0 && !errno && *end == 0 && l <= INT_MAX) {
      *v = (int)l;
      return 1;
    }
  }
  char *shown = cJSON_PrintUnformatted(x);
  dfpo_err_set(err, DFPO_EDATA, "%s: \"%s\" is %.40s, not an integer in [0, %d]", from, key,
               shown ? shown : "?", INT_MAX);
  free(shown);
  return -1;
}

/* Reads n_layer, n_head, ... from a JSON object (metadata or config.json)
 * into c; *found counts the fields it found. DFPO_EDATA when one is not an
 * integer in range. */
static int config_from_json(const cJSON *o, gpt2_config *c, const char *from, int *found,
                            dfpo_err *err) {
  struct {
    const char *key;
    int *v;
    int counts;
  } f[] = {{"n_layer", &c->n_layer, 1}, {"n_head", &c->n_head, 1},
           {"n_embd", &c->n_embd, 1},   {"vocab_size", &c->vocab_size, 1},
           {"n_ctx", &c->n_ctx, 1},     {"n_positions", &c->n_ctx, 1},
           {"head", &c->head, 0},       {"n_classes", &c->n_classes, 0}};
  *found = 0;
  int have_ctx = 0;
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    if (f[i].v == &c->n_ctx && have_ctx)
      continue; /* n_ctx first, else n_positions */
    int r = json_int(o, f[i].key, f[i].v, from, err);
    if (r < 0)
      return DFPO_EDATA;
    if (r && f[i].v == &c->n_ctx)
      have_ctx = 1;
    *found += r && f[i].counts;
  }
  return DFPO_OK;
}

/* The layer of a tensor named "h.<l>.<rest>", l in [0, 100000); else -1
 * (sscanf's %d would be undefined on a number past INT_MAX). */
static int layer_of(const char *nm) {
  if (strncmp(nm, "h.", 2) != 0)
    return -1;
  int l = 0, digits = 0;
  for (nm += 2; *nm >= '0' && *nm <= '9'; nm++, digits++) {
    l = l * 10 + (*nm - '0');
    if (l >= 100000)
      return -1;
  }
  return digits && *nm == '.' ? l : -1;
}

int gpt2_import_safetensors(model_t **out, const char *path, const gpt2_config *given,
                            dfpo_err *err) {
  return gpt2_import_safetensors_as(out, path, given, OPS_DTYPE_F32, err);
}

int gpt2_import_safetensors_as(model_t **out, const char *path, const gpt2_config *given,
                               ops_dtype wd, dfpo_err *err) {
  *out = NULL;
  if (wd != OPS_DTYPE_F32 && wd != OPS_DTYPE_BF16 && wd != OPS_DTYPE_F16)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: weight dtype %d unknown", path, (int)wd);
  st_set set;
  int rc = st_set_open(&set, path, err);
  if (rc)
    return rc;
  gpt2_model *m = NULL;
  float *buf = NULL;
  uint16_t *h16 = NULL;
  const cJSON *meta = set.files[0].meta;

  /* the config: given, else metadata, else config.json beside, else shapes */
  gpt2_config cfg;
  memset(&cfg, 0, sizeof cfg);
  const char *cfg_from = "the caller";
  if (given) {
    cfg = *given;
  } else {
    for (int j = 0; j < set.n; j++)
      for (int i = 0; i < set.files[j].n; i++) {
        const st_entry *e = &set.files[j].ents[i];
        const char *nm = strip_prefix(e->name);
        int l;
        if (strcmp(nm, "wte.weight") == 0 && e->ndim == 2) {
          cfg.vocab_size = (int)e->shape[0];
          cfg.n_embd = (int)e->shape[1];
        } else if (strcmp(nm, "wpe.weight") == 0 && e->ndim == 2) {
          cfg.n_ctx = (int)e->shape[0];
        } else if ((l = layer_of(nm)) >= 0 && l + 1 > cfg.n_layer) {
          cfg.n_layer = l + 1;
        } else if (strcmp(nm, "v_head.summary.weight") == 0) {
          cfg.head = MODEL_HEAD_VALUE;
        } else if (strcmp(nm, "score.weight") == 0 && e->ndim == 2) {
          cfg.head = MODEL_HEAD_CLASS;
          cfg.n_classes = (int)e->shape[0];
        }
      }
    cfg_from = "the tensor shapes";
    int found = 0;
    if (meta && (rc = config_from_json(meta, &cfg, path, &found, err)))
      goto done;
    if (found > 0) {
      cfg_from = "the header's __metadata__";
    } else {
      char cpath[4096];
      if ((rc = model_config_beside(path, cpath, sizeof cpath, err)))
        goto done;
      char *text = NULL;
      if (dfpo_read_file(cpath, &text, NULL, NULL) == DFPO_OK) {
        cJSON *cj = dfpo_json_nul_escape(text, strlen(text)) < 0 ? cJSON_Parse(text) : NULL;
        free(text);
        if (!cJSON_IsObject(cj)) {
          cJSON_Delete(cj);
          rc = dfpo_err_set(err, DFPO_EDATA, "%s: not a JSON object (or \\u0000 in a string)",
                            cpath);
          goto done;
        }
        rc = config_from_json(cj, &cfg, cpath, &found, err);
        cJSON_Delete(cj);
        if (rc)
          goto done;
        cfg_from = "config.json";
      } else if (cfg.n_head == 0) {
        rc = dfpo_err_set(err, DFPO_EDATA,
                          "%s: n_head is in neither the header's __metadata__ nor a config.json "
                          "beside the file",
                          path);
        goto done;
      }
    }
  }
  if ((rc = gpt2_config_check(&cfg, err))) {
    dfpo_err_prefix(err, "%s: config from %s", path, cfg_from);
    goto done;
  }
  if ((rc = gpt2_create_as(&m, &cfg, wd, err)))
    goto done;

  /* every tensor of the model must be there with the right shape */
  size_t maxn = 0;
  for (int k = 0; k < m->ntensors; k++) {
    size_t nk = (size_t)m->tensors[k].rows * m->tensors[k].cols;
    if (nk > maxn)
      maxn = nk;
  }
  if (!(buf = malloc(maxn * sizeof(float) * 2)) ||
      (wd != OPS_DTYPE_F32 && !(h16 = malloc(maxn * sizeof(uint16_t))))) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  for (int k = 0; k < m->ntensors; k++) {
    const gpt2_tensor *t = &m->tensors[k];
    const st_entry *e = NULL;
    st_file *f = NULL;
    for (int j = 0; j < set.n && !e; j++)
      for (int i = 0; i < set.files[j].n && !e; i++)
        if (strcmp(strip_prefix(set.files[j].ents[i].name), t->name) == 0) {
          e = &set.files[j].ents[i];
          f = &set.files[j];
        }
    if (!e) {
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s' missing (config from %s)", path, t->name,
                        cfg_from);
      goto done;
    }
    /* expected shape in Hugging Face's layout */
    int64_t want[2] = {t->rows, t->cols};
    int nd = 2;
    if (t->rows == 1 && strcmp(t->name, "v_head.summary.weight") != 0) {
      nd = 1;
      want[0] = t->cols;
    } else if (t->conv1d) {
      want[0] = t->cols;
      want[1] = t->rows;
    }
    if ((rc = st_check_shape(f, e, t->name, nd, want, cfg_from, err)) ||
        (rc = st_read_f32(f, e, t->name, buf + maxn, err)))
      goto done;
    float *dst = buf + maxn;
    if (t->conv1d) { /* [in=cols, out=rows] -> [rows, cols] */
      for (int r = 0; r < t->rows; r++)
        for (int c = 0; c < t->cols; c++)
          buf[(size_t)r * t->cols + c] = dst[(size_t)c * t->rows + r];
      dst = buf;
    }
    size_t n = (size_t)t->rows * t->cols;
    if (t->w16) { /* rounded as gpt2_set_weight_dtype rounds (ops_f32_to_w16) */
      ops_f32_to_w16(h16, dst, n, (int)wd);
      m->base.ops->upload(m->params16 + t->off, h16, n * sizeof(uint16_t));
    } else {
      m->base.ops->upload(m->params + t->off, dst, n * sizeof(float));
    }
  }
  /* the first few extra tensors by name, then how many more: a file of
   * 100,000 extra tensors must not print 100,000 lines */
  long extra = 0;
  for (int j = 0; j < set.n; j++)
    for (int i = 0; i < set.files[j].n; i++) {
      const char *nm = strip_prefix(set.files[j].ents[i].name);
      int known = 0;
      for (int k = 0; k < m->ntensors && !known; k++)
        known = strcmp(m->tensors[k].name, nm) == 0;
      size_t L = strlen(nm);
      if (!known && strcmp(nm, "lm_head.weight") != 0 &&
          !(L > 10 && strcmp(nm + L - 10, ".attn.bias") == 0) &&
          !(L > 17 && strcmp(nm + L - 17, ".attn.masked_bias") == 0) && extra++ < GPT2_EXTRA_WARN)
        dfpo_warn("%s: tensor '%s' is not part of the model; ignored", set.paths[j],
                  set.files[j].ents[i].name);
    }
  if (extra > GPT2_EXTRA_WARN)
    dfpo_warn("%s: %ld more tensors that are not part of the model; ignored", path,
              extra - GPT2_EXTRA_WARN);
  *out = &m->base;
  m = NULL;
done:
  gpt2_destroy(m);
  free(buf);
  free(h16);
  st_set_close(&set);
  return rc;
}

/* Whether tensor t is the extra head's (not part of transformers'
 * GPT2LMHeadModel). */
static int is_head_tensor(const gpt2_tensor *t) {
  return strncmp(t->name, "v_head.", 7) == 0 || strncmp(t->name, "score.", 6) == 0;
}

/* config.json for transformers' GPT2Config: the model's own sizes, and the
 * end-of-text id of its tokenizer (null when unknown: an absent key would
 * read as GPT-2's 50256). dfpo trains without dropout, so the dropout
 * rates are 0. */
static cJSON *hf_config_json(const gpt2_model *m, const model_export_opts *x) {
  cJSON *o = cJSON_CreateObject();
  cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
  cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
  cJSON_AddStringToObject(o, "model_type", "gpt2");
  cJSON_AddNumberToObject(o, "vocab_size", m->cfg.vocab_size);
  cJSON_AddNumberToObject(o, "n_positions", m->cfg.n_ctx);
  cJSON_AddNumberToObject(o, "n_ctx", m->cfg.n_ctx);
  cJSON_AddNumberToObject(o, "n_embd", m->cfg.n_embd);
  cJSON_AddNumberToObject(o, "n_layer", m->cfg.n_layer);
  cJSON_AddNumberToObject(o, "n_head", m->cfg.n_head);
  cJSON_AddNullToObject(o, "n_inner");
  cJSON_AddStringToObject(o, "activation_function", "gelu_new");
  cJSON_AddNumberToObject(o, "layer_norm_epsilon", 1e-5);
  cJSON_AddNumberToObject(o, "resid_pdrop", 0);
  cJSON_AddNumberToObject(o, "embd_pdrop", 0);
  cJSON_AddNumberToObject(o, "attn_pdrop", 0);
  cJSON_AddNumberToObject(o, "initializer_range", 0.02);
  cJSON_AddBoolToObject(o, "scale_attn_weights", 1);
  cJSON_AddBoolToObject(o, "scale_attn_by_inverse_layer_idx", 0);
  cJSON_AddBoolToObject(o, "reorder_and_upcast_attn", 0);
  cJSON_AddBoolToObject(o, "tie_word_embeddings", 1);
  cJSON_AddBoolToObject(o, "use_cache", 1);
  model_hf_config_tail(o, x);
  return o;
}

/* The LoRA adapters alone as peft saves them for transformers'
 * GPT2LMHeadModel (save_pretrained of a PeftModel): adapter_model.safetensors
 * at path with peft's names (the adapter name left out, as
 * get_peft_model_state_dict does), base_model.model.transformer.h.<l>.<layer>.
 * lora_A.weight [r, in] and .lora_B.weight [out, r] (GPT-2's Conv1D layers
 * take the in and out of their [in, out] weight), and adapter_config.json
 * beside it: LoraConfig's fields, fan_in_fan_out true (Conv1D), target
 * modules by their dotted suffix so that attn.c_proj and mlp.c_proj stay
 * apart. */
static int export_adapters(const gpt2_model *m, const char *path, dfpo_err *err) {
  const gpt2_lora *z = &m->lora;
  ckpt_st_tensor *ts = calloc((size_t)z->ntensors, sizeof *ts);
  char(*names)[160] = calloc((size_t)z->ntensors, sizeof *names);
  cJSON *meta = cJSON_CreateObject();
  if (!ts || !names || !meta) {
    free(ts), free(names);
    cJSON_Delete(meta);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  cJSON_AddStringToObject(meta, "format", "pt");
  for (int i = 0; i < z->ntensors; i++) {
    const gpt2_tensor *t = &z->tensors[i];
    snprintf(names[i], sizeof names[i], "base_model.model.transformer.%s", t->name);
    /* A [r, in] as stored; B stored [r, out], written [out, r] */
    ts[i] = (ckpt_st_tensor){.name = names[i],
                             .dev = z->params + t->off,
                             .rows = t->rows,
                             .cols = t->cols,
                             .ndim = 2,
                             .transpose = t->conv1d};
  }
  int rc = ckpt_write_safetensors(&m->base, path, meta, ts, z->ntensors, err);
  free(ts);
  free(names);
  if (rc)
    return rc;
  const char *targets[GPT2_LORA_N];
  int nt = 0;
  for (int k = 0; k < GPT2_LORA_N; k++)
    if ((z->targets >> k) & 1)
      targets[nt++] = gpt2_lora_names[k];
  return ckpt_write_peft_config(path, z->r, z->alpha, targets, nt, 1, err);
}

/* transformer.h.<l>.<target k>: the module peft's names start from. */
static void peft_module(const void *ctx, int l, int k, char *buf, size_t len) {
  (void)ctx;
  snprintf(buf, len, "transformer.h.%d.%s", l, gpt2_lora_names[k]);
}

int gpt2_import_adapters(gpt2_model *m, const char *dir, dfpo_err *err) {
  ckpt_peft p;
  float *host;
  int rc = ckpt_peft_start(&p, &m->base, dir, gpt2_lora_names, GPT2_LORA_N, m->cfg.n_layer,
                           peft_module, NULL, 0, &host, err);
  if (rc)
    return rc;
  const gpt2_lora *z = &m->lora;
  for (int i = 0; !rc && i < z->ntensors; i++) {
    const gpt2_tensor *t = &z->tensors[i];
    if (z->head >= 0 && i >= z->head)
      break; /* the head's copy comes last */
    char name[192];
    snprintf(name, sizeof name, "base_model.model.transformer.%s", t->name);
    /* A [r, in] as stored; B [out, r] into the stored [r, out] */
    rc = ckpt_peft_read(&p, name, t->rows, t->cols, t->conv1d, host + t->off, err);
  }
  return ckpt_peft_finish(&p, &m->base, host, rc, err);
}

/* The adapter of GPT-2 tensor index k (a block's linear weight), as the
 * index of its A in m->lora.tensors; -1 when not adapted. */
static int adapter_of(const gpt2_model *m, int k) {
  static const int kind[GP_PER_LAYER] = {[GP_QKVW] = GPT2_LORA_QKV + 1,
                                         [GP_PROJW] = GPT2_LORA_PROJ + 1,
                                         [GP_FCW] = GPT2_LORA_FC + 1,
                                         [GP_FCPW] = GPT2_LORA_FCP + 1};
  if (!m->lora.r || k < 2 || k >= gpt2_tidx_lnfw(m) || !kind[(k - 2) % GP_PER_LAYER])
    return -1;
  return m->lora.first[(k - 2) / GP_PER_LAYER * GPT2_LORA_N + kind[(k - 2) % GP_PER_LAYER] - 1];
}

int gpt2_export_safetensors(const gpt2_model *m, const char *path, const model_export_opts *o,
                            dfpo_err *err) {
  if (o->adapters)
    return m->lora.r ? export_adapters(m, path, err)
                     : dfpo_err_set(err, DFPO_EUSAGE, "%s: the model has no LoRA adapters", path);
  cJSON *meta = cJSON_CreateObject();
  char num[32];
  cJSON_AddStringToObject(meta, "format", "pt");
#define META(k, v)                                                                                 \
  snprintf(num, sizeof num, "%d", v);                                                              \
  cJSON_AddStringToObject(meta, k, num)
  META("n_layer", m->cfg.n_layer);
  META("n_head", m->cfg.n_head);
  META("n_embd", m->cfg.n_embd);
  META("vocab_size", m->cfg.vocab_size);
  META("n_ctx", m->cfg.n_ctx);
  META("head", o->lm_only ? MODEL_HEAD_NONE : m->cfg.head);
  META("n_classes", o->lm_only ? 0 : m->cfg.n_classes);
#undef META
  ckpt_st_tensor *ts = calloc((size_t)m->ntensors, sizeof *ts);
  char(*names)[160] = calloc((size_t)m->ntensors, sizeof *names);
  if (!ts || !names) {
    free(ts), free(names);
    cJSON_Delete(meta);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  int n = 0;
  for (int k = 0; k < m->ntensors; k++) {
    const gpt2_tensor *t = &m->tensors[k];
    if (o->lm_only && is_head_tensor(t))
      continue;
    snprintf(names[n], sizeof names[n], "%s%s", o->lm_only ? "transformer." : "", t->name);
    ts[n] = (ckpt_st_tensor){
        .name = names[n],
        .dev = t->w16 ? NULL : m->params + t->off,
        .dev16 = t->w16 ? m->params16 + t->off : NULL, /* written widened */
        .dtype = (int)m->wdtype,
        .rows = t->rows,
        .cols = t->cols,
        .ndim = t->rows == 1 && strcmp(t->name, "v_head.summary.weight") != 0 ? 1 : 2,
        .transpose = t->conv1d};
    int a = adapter_of(m, k);
    if (a >= 0) { /* W + (alpha/r) B A: the adapters merged */
      const gpt2_lora *z = &m->lora;
      ts[n].lo_a = z->params + z->tensors[a].off;
      ts[n].lo_b = z->params + z->tensors[a + 1].off;
      ts[n].lo_r = z->r;
      ts[n].lo_scale = z->alpha / (float)z->r;
    }
    n++;
  }
  int rc = ckpt_write_safetensors(&m->base, path, meta, ts, n, err);
  free(ts);
  free(names);
  if (rc || !o->write_config)
    return rc;
  char cpath[4096];
  if ((rc = model_config_beside(path, cpath, sizeof cpath, err)))
    return rc;
  cJSON *cj = hf_config_json(m, o);
  if (!cj)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  rc = ckpt_write_json(cpath, cj, err);
  cJSON_Delete(cj);
  return rc;
}
