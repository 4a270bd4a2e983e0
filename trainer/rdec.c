/* The rotary decoders (trainer/rdec.h): GPT-J, GPT-NeoX / Pythia and Llama
 * on one code path, forward and KV-cache decoding, through the backend's
 * op table. */
#include "trainer/rdec.h"
#include "trainer/ckpt_internal.h"
#include "trainer/model_internal.h"
#include "trainer/st_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The tensors of one layer, in memory order (-1: the family has none).
 * QKV is q | k | v stacked by rows ([(NH + 2 NKV) HS, C]; GPT-NeoX's fused
 * per-head rows are reordered so at import), FC GPT-J's fc_in, GPT-NeoX's
 * dense_h_to_4h or Llama's gate_proj | up_proj ([2F, C]), OUT the MLP's
 * output projection. */
enum {
  L_LN1W,
  L_LN1B,
  L_QKVW,
  L_QKVB,
  L_OW,
  L_OB,
  L_LN2W,
  L_LN2B,
  L_FCW,
  L_FCB,
  L_OUTW,
  L_OUTB,
  L_N
};

typedef struct rdec_tensor {
  char name[96];
  size_t off;
  int rows, cols; /* vectors: rows 1 */
  int vec;
  char src[3][96]; /* the Hugging Face tensors stacked by rows into this one */
  int nsrc;
  int neox_qkv; /* rows per head [q, k, v] in the file: reordered to q | k | v */
  int w16;      /* kept in 16 bits (model_set_weight_dtype): off counts params16's uint16_t */
} rdec_tensor;

/* The activations of one pass over N = B T tokens (a forward pass, or a
 * decoding call) in backend memory: x the residual stream, h ln1's output
 * (or the final norm's after the pass), qkvr the rotated q | k | v, qkv
 * them with the key/value heads repeated, att the softmax, y the heads'
 * output, t the attention's, xm the sequential residual's middle (x + t),
 * h2 ln2's output, f the MLP's pre-activation, fo its activation, mo its
 * output, st the norms' mean and rstd [4N]. A forward pass also keeps xs,
 * the input of every layer [L, N, C] (the backward pass recomputes each
 * layer from it), and vals [N] (a value head's output). */
typedef struct rdec_ws {
  float *x, *h, *h2, *qkvr, *qkv, *att, *y, *t, *xm, *f, *fo, *mo, *st, *xs, *vals;
  int *tok, *pos, *zeros, *kstart;
} rdec_ws;

/* The backward pass's scratch over N tokens (backend memory): gx the
 * residual's gradient, dh and dh2 the norms' outputs', dy, dqkv (repeated
 * heads), dqkvr, dfo, df, dlp and dent [N] the LM objective's weights, dv
 * [N] the value head's, dpos [C] the sink of encoder_bwd's position
 * table. */
typedef struct rdec_grad_ws {
  float *gx, *dh, *dh2, *dy, *dqkv, *dqkvr, *dfo, *df, *dlp, *dent, *dv, *dpos;
} rdec_grad_ws;

/* LoRA (model.h's model_add_lora) on the layers' four linear slots: QKV
 * (q | k | v), OW (the attention's output), FCW (the MLP's input, Llama's
 * gate | up) and OUTW. A target is one Hugging Face linear layer: a slot and
 * the rows of it that layer holds (GPT-J's and Llama's q_proj: the q rows
 * of QKV; GPT-NeoX's query_key_value: all of them). */
enum { RS_QKV, RS_O, RS_FC, RS_OUT, RS_N };
enum { RP_ALL, RP_Q, RP_K, RP_V, RP_GATE, RP_UP };
typedef struct rdec_lora_target {
  const char *name; /* as peft's target_modules name it ("self_attn.q_proj") */
  int slot, part;   /* RS_*, RP_* */
} rdec_lora_target;
#define RDEC_LORA_MAX 7

/* The adapters: per layer and slot, the A of each targeted layer of the
 * slot ([r, in] each, adjacent: one [nt r, in] block), then their B
 * stored transposed ([r, out] each; peft's lora_B.weight [out, r]); with a
 * value head, a trainable copy of it last. The forward pass computes u =
 * (alpha/r) x [A_1; ..; A_nt]^T [N, nt r] and adds u Bf, Bf [nt r, the
 * slot's rows] holding each Bt in its rows' columns (zero elsewhere), built
 * from the parameters in scratch when the slot's targets do not cover it
 * with one adapter. */
typedef struct rdec_lora {
  int r;
  float alpha;
  unsigned targets; /* bit k: the family's target k */
  int on, fwd_on;   /* applied now; applied by the last forward pass */
  int ntab;
  const rdec_lora_target *tab;
  int nt[RS_N], tk[RS_N][RDEC_LORA_MAX]; /* targets of each slot, in the order of k */
  rdec_tensor *tensors;
  int ntensors;
  int (*first)[RS_N]; /* per layer and slot: the index of its first A; -1: none */
  int head;           /* index of the value head's copy; -1: none */
  size_t nparams;
  float *params, *train_block, *grads, *m1, *m2;
  float *scratch; /* u per slot [ncap, nt r], du, Bf per slot, dBf */
  size_t scratch_floats;
  size_t ncap; /* the rows the scratch is laid out for */
} rdec_lora;

typedef struct rdec_model {
  struct model base;
  rdec_config cfg;
  rdec_tensor *tensors;
  int ntensors;
  int (*layer)[L_N];
  int wte, lnfw, lnfb, headw, headb; /* headw -1 when tied, lnfb/headb -1 when absent */
  int vhead;                         /* v_head.summary.weight (bias next); -1: none */
  float *params;
  size_t nparams; /* the fp32 layout's parameters (what save, load and training count) */
  /* 16-bit weights (model_set_weight_dtype): wdtype the precision of the
   * big matrices, params16 their block of n16 values, nparams32 the floats
   * params holds then (nparams while fp32) */
  ops_dtype wdtype;
  uint16_t *params16;
  size_t n16, nparams32;
  /* training state (NULL until model_ensure_train) and backward scratch */
  float *train_block, *grads, *m1, *m2;
  float *bwd;
  size_t bwd_floats;
  rdec_grad_ws gw_;
  int have_lm; /* lm_logprobs ran on the current forward pass */
  float *zero; /* [C] zeros: the position table encoder_fwd adds */
  /* forward pass */
  float *act;
  size_t act_floats;
  rdec_ws fw;
  float *logits, *lse, *lp, *ent;
  float *hh; /* [B (T - fh), C]: the final norm's output at a narrowed head's columns */
  int *ids;
  size_t ids_cap;
  int fB, fT; /* the last forward pass (fB 0: none) */
  int fh;     /* its LM head's first column (model_batch.head_from) */
  /* decoding */
  float *gen;
  size_t gen_floats;
  float *g_spare; /* decode_reorder's scratch: one cache tensor */
  size_t g_spare_floats;
  rdec_ws gw;
  float **kc, **vc, *g_logits;
  int *gen_ids;
  size_t gen_ids_cap;
  int *g_kstart; /* host copy */
  int gB, gmax, gn;
  int params_borrowed;        /* params are another model's (a base or adapter view) */
  struct rdec_model *view_of; /* a view: the model whose params it borrows */
  int nviews;                 /* views of this model alive (its weights stay as they are) */
  rdec_lora lora;             /* r 0: no adapters */
} rdec_model;

extern const model_vtable rdec_vtable;

static rdec_model *rdec_of(model_t *m) {
  return (rdec_model *)m;
}
static const rdec_model *rdec_of_const(const model_t *m) {
  return (const rdec_model *)m;
}

static const char *const family_name[] = {"gptj", "gpt_neox", "llama"};

int rdec_handles(const char *model_type) {
  for (int i = 0; model_type && i < 3; i++)
    if (!strcmp(model_type, family_name[i]))
      return 1;
  return 0;
}

const rdec_config *rdec_get_config(const model_t *m) {
  return m && m->vt == &rdec_vtable ? &rdec_of_const(m)->cfg : NULL;
}

/* ------------------------------------------------------------ layout */

static int add_tensor(rdec_model *m, int vec, int rows, int cols, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int add_tensor(rdec_model *m, int vec, int rows, int cols, const char *fmt, ...) {
  rdec_tensor *t = &m->tensors[m->ntensors];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->name, sizeof t->name, fmt, ap);
  va_end(ap);
  t->off = m->nparams;
  t->rows = rows;
  t->cols = cols;
  t->vec = vec;
  m->nparams += (size_t)rows * cols;
  return m->ntensors++;
}

/* a source tensor of t, in stacking order */
static void add_src(rdec_model *m, int ti, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_src(rdec_model *m, int ti, const char *fmt, ...) {
  rdec_tensor *t = &m->tensors[ti];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->src[t->nsrc++], sizeof t->src[0], fmt, ap);
  va_end(ap);
}

/* A tensor read from one Hugging Face tensor of the same name. */
static int add_own(rdec_model *m, int vec, int rows, int cols, const char *name) {
  int i = add_tensor(m, vec, rows, cols, "%s", name);
  add_src(m, i, "%s", name);
  return i;
}

static void build_layout(rdec_model *m) {
  const rdec_config *c = &m->cfg;
  int C = c->n_embd, HS = c->head_dim, I = c->n_head * HS, IK = c->n_kv_head * HS, F = c->d_ff,
      V = c->vocab_size, QKV = I + 2 * IK;
  char p[64], nm[160];
  for (int l = 0; l < c->n_layer; l++) {
    int *L = m->layer[l];
    for (int k = 0; k < L_N; k++)
      L[k] = -1;
    if (c->family == RDEC_GPTJ) {
      snprintf(p, sizeof p, "transformer.h.%d.", l);
      snprintf(nm, sizeof nm, "%sln_1.weight", p), L[L_LN1W] = add_own(m, 1, 1, C, nm);
      snprintf(nm, sizeof nm, "%sln_1.bias", p), L[L_LN1B] = add_own(m, 1, 1, C, nm);
      L[L_QKVW] = add_tensor(m, 0, QKV, C, "%sattn.qkv_proj.weight", p);
      add_src(m, L[L_QKVW], "%sattn.q_proj.weight", p);
      add_src(m, L[L_QKVW], "%sattn.k_proj.weight", p);
      add_src(m, L[L_QKVW], "%sattn.v_proj.weight", p);
      snprintf(nm, sizeof nm, "%sattn.out_proj.weight", p), L[L_OW] = add_own(m, 0, C, I, nm);
      snprintf(nm, sizeof nm, "%smlp.fc_in.weight", p), L[L_FCW] = add_own(m, 0, F, C, nm);
      snprintf(nm, sizeof nm, "%smlp.fc_in.bias", p), L[L_FCB] = add_own(m, 1, 1, F, nm);
      snprintf(nm, sizeof nm, "%smlp.fc_out.weight", p), L[L_OUTW] = add_own(m, 0, C, F, nm);
      snprintf(nm, sizeof nm, "%smlp.fc_out.bias", p), L[L_OUTB] = add_own(m, 1, 1, C, nm);
    } else if (c->family == RDEC_NEOX) {
      snprintf(p, sizeof p, "gpt_neox.layers.%d.", l);
      snprintf(nm, sizeof nm, "%sinput_layernorm.weight", p), L[L_LN1W] = add_own(m, 1, 1, C, nm);
      snprintf(nm, sizeof nm, "%sinput_layernorm.bias", p), L[L_LN1B] = add_own(m, 1, 1, C, nm);
      snprintf(nm, sizeof nm, "%sattention.query_key_value.weight", p);
      L[L_QKVW] = add_own(m, 0, QKV, C, nm);
      m->tensors[L[L_QKVW]].neox_qkv = 1;
      snprintf(nm, sizeof nm, "%sattention.query_key_value.bias", p);
      L[L_QKVB] = add_own(m, 1, 1, QKV, nm);
      m->tensors[L[L_QKVB]].neox_qkv = 1;
      snprintf(nm, sizeof nm, "%sattention.dense.weight", p), L[L_OW] = add_own(m, 0, C, I, nm);
      snprintf(nm, sizeof nm, "%sattention.dense.bias", p), L[L_OB] = add_own(m, 1, 1, C, nm);
      snprintf(nm, sizeof nm, "%spost_attention_layernorm.weight", p);
      L[L_LN2W] = add_own(m, 1, 1, C, nm);
      snprintf(nm, sizeof nm, "%spost_attention_layernorm.bias", p);
      L[L_LN2B] = add_own(m, 1, 1, C, nm);
      snprintf(nm, sizeof nm, "%smlp.dense_h_to_4h.weight", p), L[L_FCW] = add_own(m, 0, F, C, nm);
      snprintf(nm, sizeof nm, "%smlp.dense_h_to_4h.bias", p), L[L_FCB] = add_own(m, 1, 1, F, nm);
      snprintf(nm, sizeof nm, "%smlp.dense_4h_to_h.weight", p), L[L_OUTW] = add_own(m, 0, C, F, nm);
      snprintf(nm, sizeof nm, "%smlp.dense_4h_to_h.bias", p), L[L_OUTB] = add_own(m, 1, 1, C, nm);
    } else {
      snprintf(p, sizeof p, "model.layers.%d.", l);
      snprintf(nm, sizeof nm, "%sinput_layernorm.weight", p), L[L_LN1W] = add_own(m, 1, 1, C, nm);
      L[L_QKVW] = add_tensor(m, 0, QKV, C, "%sself_attn.qkv_proj.weight", p);
      add_src(m, L[L_QKVW], "%sself_attn.q_proj.weight", p);
      add_src(m, L[L_QKVW], "%sself_attn.k_proj.weight", p);
      add_src(m, L[L_QKVW], "%sself_attn.v_proj.weight", p);
      snprintf(nm, sizeof nm, "%sself_attn.o_proj.weight", p), L[L_OW] = add_own(m, 0, C, I, nm);
      snprintf(nm, sizeof nm, "%spost_attention_layernorm.weight", p);
      L[L_LN2W] = add_own(m, 1, 1, C, nm);
      L[L_FCW] = add_tensor(m, 0, 2 * F, C, "%smlp.gate_up_proj.weight", p);
      add_src(m, L[L_FCW], "%smlp.gate_proj.weight", p);
      add_src(m, L[L_FCW], "%smlp.up_proj.weight", p);
      snprintf(nm, sizeof nm, "%smlp.down_proj.weight", p), L[L_OUTW] = add_own(m, 0, C, F, nm);
    }
  }
  static const char *const emb[] = {"transformer.wte.weight", "gpt_neox.embed_in.weight",
                                    "model.embed_tokens.weight"};
  static const char *const lnf[] = {"transformer.ln_f", "gpt_neox.final_layer_norm", "model.norm"};
  static const char *const head[] = {"lm_head", "embed_out", "lm_head"};
  /* the embedding after the layers: the layers' tensors stay one block
   * whatever the family */
  m->wte = add_own(m, 0, V, C, emb[c->family]);
  snprintf(nm, sizeof nm, "%s.weight", lnf[c->family]), m->lnfw = add_own(m, 1, 1, C, nm);
  m->lnfb = -1;
  if (!c->rmsnorm)
    snprintf(nm, sizeof nm, "%s.bias", lnf[c->family]), m->lnfb = add_own(m, 1, 1, C, nm);
  m->headw = m->headb = -1;
  if (!c->tied)
    snprintf(nm, sizeof nm, "%s.weight", head[c->family]), m->headw = add_own(m, 0, V, C, nm);
  if (c->head_bias)
    snprintf(nm, sizeof nm, "%s.bias", head[c->family]), m->headb = add_own(m, 1, 1, V, nm);
  /* a value model's head, trl's names as GPT-2's (no Hugging Face source) */
  m->vhead = -1;
  if (m->base.cfg.head == MODEL_HEAD_VALUE) {
    m->vhead = add_tensor(m, 0, 1, C, "v_head.summary.weight");
    add_tensor(m, 1, 1, 1, "v_head.summary.bias");
  }
}

/* an fp32 tensor (NULL for a 16-bit one: those go through linear and
 * embed) */
static float *P(const rdec_model *m, int i) {
  return i < 0 || m->tensors[i].w16 ? NULL : m->params + m->tensors[i].off;
}
static float *LP(const rdec_model *m, int l, int slot) {
  return P(m, m->layer[l][slot]);
}
/* gradients (training state allocated) */
static float *G(const rdec_model *m, int i) {
  return i < 0 || !m->grads ? NULL : m->grads + m->tensors[i].off;
}
static float *LG(const rdec_model *m, int l, int slot) {
  return G(m, m->layer[l][slot]);
}
/* The value head's weight (its bias follows) and its gradient: the
 * trainable copy among a LoRA model's adapters, else the base's. */
static float *vh_param(const rdec_model *m) {
  const rdec_lora *z = &m->lora;
  return z->r && z->head >= 0 ? z->params + z->tensors[z->head].off : P(m, m->vhead);
}
static float *vh_grad(const rdec_model *m) {
  const rdec_lora *z = &m->lora;
  return z->r && z->head >= 0 ? z->grads + z->tensors[z->head].off : G(m, m->vhead);
}

static void rdec_destroy(rdec_model *m) {
  if (!m)
    return;
  const ops_backend *o = m->base.ops;
  if (m->view_of)
    m->view_of->nviews--;
  if (o) {
    if (!m->params_borrowed)
      o->free(m->params);
    if (m->params16 && !m->params_borrowed)
      o->free(m->params16);
    o->free(m->lora.params);
    o->free(m->lora.train_block);
    o->free(m->lora.scratch);
    o->free(m->zero);
    o->free(m->act);
    o->free(m->ids);
    o->free(m->gen);
    o->free(m->g_spare);
    o->free(m->gen_ids);
    o->free(m->train_block);
    o->free(m->bwd);
  }
  free(m->kc);
  free(m->vc);
  free(m->g_kstart);
  free(m->lora.tensors);
  free(m->lora.first);
  free(m->tensors);
  free(m->layer);
  free(m);
}

static int w16_tensor(const rdec_model *m, int i);

/* A model of config c with its weight blocks allocated (not filled): fp32
 * throughout (wd OPS_DTYPE_F32), or laid out for wd as
 * model_set_weight_dtype lays it out (the 16-bit tensors, w16_tensor's, in
 * params16, the rest compacted in params), so that an import in 16 bits
 * never holds the fp32 copy; with borrow (a base view), another model's
 * blocks in that layout instead (borrow, and borrow16 when wd is 16 bits). */
static int rdec_create(rdec_model **out, const rdec_config *c, int head, float *borrow,
                       uint16_t *borrow16, ops_dtype wd, dfpo_err *err) {
  *out = NULL;
  rdec_model *m = calloc(1, sizeof *m);
  if (!m)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  m->cfg = *c;
  m->base.vt = &rdec_vtable;
  m->base.ops = ops_default_backend();
  m->base.cfg.arch = family_name[c->family];
  m->base.cfg.vocab_size = c->vocab_size;
  m->base.cfg.n_ctx = c->n_ctx;
  m->base.cfg.head = head;
  m->tensors = calloc((size_t)c->n_layer * L_N + 10, sizeof *m->tensors);
  m->layer = calloc((size_t)c->n_layer, sizeof *m->layer);
  m->kc = calloc((size_t)c->n_layer, sizeof *m->kc);
  m->vc = calloc((size_t)c->n_layer, sizeof *m->vc);
  if (!m->tensors || !m->layer || !m->kc || !m->vc) {
    rdec_destroy(m);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  build_layout(m);
  m->wdtype = OPS_DTYPE_F32;
  m->nparams32 = m->nparams;
  if (wd != OPS_DTYPE_F32) {
    size_t n32 = 0, n16 = 0;
    for (int i = 0; i < m->ntensors; i++) {
      rdec_tensor *t = &m->tensors[i];
      t->w16 = w16_tensor(m, i);
      t->off = model_w16_place((size_t)t->rows * t->cols, t->w16, &n32, &n16);
    }
    m->wdtype = wd, m->nparams32 = n32, m->n16 = n16;
    if (borrow)
      m->params16 = borrow16;
    else if (n16 && !(m->params16 = m->base.ops->alloc(n16 * sizeof(uint16_t)))) {
      rdec_destroy(m);
      return dfpo_err_set(err, DFPO_ERUNTIME, "cannot allocate %zu 16-bit weights on %s", n16,
                          m->base.ops->name);
    }
  }
  m->params = borrow ? borrow : m->base.ops->alloc(m->nparams32 * sizeof(float));
  m->params_borrowed = borrow != NULL;
  m->zero = m->base.ops->alloc((size_t)c->n_embd * sizeof(float));
  if (!m->params || !m->zero) {
    int rc = dfpo_err_set(err, DFPO_ERUNTIME, "cannot allocate %zu parameters on %s", m->nparams,
                          m->base.ops->name);
    rdec_destroy(m);
    return rc;
  }
  *out = m;
  return DFPO_OK;
}

/* ------------------------------------------------------------ config */

static const cJSON *jget(const cJSON *o, const char *key) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNull(x) ? NULL : x;
}
static int jint(const cJSON *o, const char *key, int dflt) {
  const cJSON *x = jget(o, key);
  return cJSON_IsNumber(x) ? (int)x->valuedouble : dflt;
}
static double jnum(const cJSON *o, const char *key, double dflt) {
  const cJSON *x = jget(o, key);
  return cJSON_IsNumber(x) ? x->valuedouble : dflt;
}
static int jbool(const cJSON *o, const char *key, int dflt) {
  const cJSON *x = jget(o, key);
  return cJSON_IsBool(x) ? cJSON_IsTrue(x) : dflt;
}
static const char *jstr(const cJSON *o, const char *key, const char *dflt) {
  const cJSON *x = jget(o, key);
  return cJSON_IsString(x) ? x->valuestring : dflt;
}

/* the GELU of hidden_act / activation_function */
static int gelu_kind(const char *a, int *act) {
  if (!strcmp(a, "gelu"))
    *act = RDEC_ACT_GELU_ERF;
  else if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_fast"))
    *act = RDEC_ACT_GELU_TANH;
  else
    return -1;
  return 0;
}

static int check_sizes(const rdec_config *c, const char *what, dfpo_err *err);

/* A rope_scaling / rope_parameters object that scales the angles (any
 * rope_type or type but "default"): 1, else 0. */
static int rope_scaled(const cJSON *o) {
  if (!o)
    return 0;
  const char *t = jstr(o, "rope_type", jstr(o, "type", "default"));
  return !cJSON_IsObject(o) || strcmp(t, "default") || jget(o, "factor");
}

/* The config of cpath; its model_type names the family. */
static int read_config(const char *cpath, rdec_config *c, dfpo_err *err) {
  char *text = NULL;
  int rc = dfpo_read_file(cpath, &text, NULL, err);
  if (rc)
    return rc;
  cJSON *j = cJSON_Parse(text);
  free(text);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a JSON object", cpath);
  }
  const char *type = jstr(j, "model_type", "");
  if (!rdec_handles(type)) {
    rc =
        dfpo_err_set(err, DFPO_EDATA, "%s: model_type '%s' is not a rotary decoder's", cpath, type);
    cJSON_Delete(j);
    return rc;
  }
  memset(c, 0, sizeof *c);
  const char *act = NULL;
  /* transformers 5 saves the rotary settings as one object, rope_parameters
   * {rope_type, rope_theta, partial_rotary_factor}, in place of the top-level
   * keys older configs (the hub's checkpoints) carry; the top-level key wins
   * where both are there */
  const cJSON *rp = jget(j, "rope_parameters");
  if (!strcmp(type, "gptj")) {
    c->family = RDEC_GPTJ;
    c->vocab_size = jint(j, "vocab_size", 50400);
    c->n_embd = jint(j, "n_embd", 4096);
    c->n_layer = jint(j, "n_layer", 28);
    c->n_head = c->n_kv_head = jint(j, "n_head", 16);
    c->head_dim = c->n_head > 0 ? c->n_embd / c->n_head : 0;
    c->d_ff = jint(j, "n_inner", 4 * c->n_embd);
    c->n_ctx = jint(j, "n_positions", 2048);
    c->rot = jint(j, "rotary_dim", c->head_dim);
    c->interleaved = 1;
    c->rope_base = (float)jnum(rp, "rope_theta", 10000.0);
    c->eps = (float)jnum(j, "layer_norm_epsilon", 1e-5);
    c->parallel = c->shared_ln = 1;
    act = jstr(j, "activation_function", "gelu_new");
    c->mlp_bias = c->head_bias = 1;
    c->tied = jbool(j, "tie_word_embeddings", 0);
  } else if (!strcmp(type, "gpt_neox")) {
    c->family = RDEC_NEOX;
    c->vocab_size = jint(j, "vocab_size", 50432);
    c->n_embd = jint(j, "hidden_size", 6144);
    c->n_layer = jint(j, "num_hidden_layers", 44);
    c->n_head = c->n_kv_head = jint(j, "num_attention_heads", 64);
    c->head_dim = c->n_head > 0 ? c->n_embd / c->n_head : 0;
    c->d_ff = jint(j, "intermediate_size", 4 * c->n_embd);
    c->n_ctx = jint(j, "max_position_embeddings", 2048);
    double pct = jnum(j, "rotary_pct",
                      jnum(j, "partial_rotary_factor", jnum(rp, "partial_rotary_factor", 0.25)));
    c->rot = (int)(c->head_dim * pct);
    c->rope_base =
        (float)jnum(j, "rotary_emb_base", jnum(j, "rope_theta", jnum(rp, "rope_theta", 10000.0)));
    c->eps = (float)jnum(j, "layer_norm_eps", 1e-5);
    c->parallel = jbool(j, "use_parallel_residual", 1);
    act = jstr(j, "hidden_act", "gelu");
    c->bias = c->mlp_bias = 1;
    if (!jbool(j, "attention_bias", 1))
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: attention_bias false is not read (GPT-NeoX's "
                        "attention has biases here)",
                        cpath);
    c->tied = jbool(j, "tie_word_embeddings", 0);
  } else {
    c->family = RDEC_LLAMA;
    c->vocab_size = jint(j, "vocab_size", 32000);
    c->n_embd = jint(j, "hidden_size", 4096);
    c->n_layer = jint(j, "num_hidden_layers", 32);
    c->n_head = jint(j, "num_attention_heads", 32);
    c->n_kv_head = jint(j, "num_key_value_heads", c->n_head);
    c->head_dim = jint(j, "head_dim", c->n_head > 0 ? c->n_embd / c->n_head : 0);
    c->d_ff = jint(j, "intermediate_size", 11008);
    c->n_ctx = jint(j, "max_position_embeddings", 2048);
    c->rot = c->head_dim;
    c->rope_base = (float)jnum(j, "rope_theta", jnum(rp, "rope_theta", 10000.0));
    c->eps = (float)jnum(j, "rms_norm_eps", 1e-6);
    c->rmsnorm = 1;
    c->act = RDEC_ACT_SWIGLU;
    const char *ha = jstr(j, "hidden_act", "silu");
    c->tied = jbool(j, "tie_word_embeddings", 0);
    if (strcmp(ha, "silu"))
      rc = dfpo_err_set(err, DFPO_EDATA, "%s: hidden_act '%s' (Llama's silu is read)", cpath, ha);
    else if (jbool(j, "attention_bias", 0) || jbool(j, "mlp_bias", 0))
      rc = dfpo_err_set(err, DFPO_EDATA,
                        "%s: attention_bias or mlp_bias true is not read (Llama has no biases "
                        "here)",
                        cpath);
  }
  if (!rc && act && gelu_kind(act, &c->act))
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: activation '%s' is not read (gelu, gelu_new, gelu_pytorch_tanh)", cpath,
                      act);
  if (!rc && rp && !cJSON_IsObject(rp))
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: rope_parameters is not an object", cpath);
  else if (!rc && c->family == RDEC_LLAMA &&
           jnum(j, "partial_rotary_factor", jnum(rp, "partial_rotary_factor", 1.0)) != 1.0)
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: partial_rotary_factor is not 1 (Llama rotates whole heads here)", cpath);
  else if (!rc && (rope_scaled(jget(j, "rope_scaling")) || rope_scaled(rp)))
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "%s: rope_scaling or rope_parameters scales the angles (rope_type not "
                      "\"default\"): scaled rotary embeddings are not read",
                      cpath);
  if (!rc)
    rc = check_sizes(c, cpath, err);
  cJSON_Delete(j);
  return rc;
}

/* The config's sizes in range (what names them: a config.json, a caller). */
static int check_sizes(const rdec_config *c, const char *what, dfpo_err *err) {
  if ((c->vocab_size <= 0 || c->n_embd <= 0 || c->n_layer <= 0 || c->n_head <= 0 ||
       c->n_kv_head <= 0 || c->head_dim <= 0 || c->d_ff <= 0 || c->n_ctx < 2 || c->n_embd > 65536 ||
       c->d_ff > 1 << 20 || c->n_layer > 1000 || c->n_head > 4096 || c->head_dim > 4096 ||
       c->vocab_size > 1 << 24 || c->n_kv_head > c->n_head || c->n_head % c->n_kv_head ||
       (c->family != RDEC_LLAMA && c->n_embd % c->n_head) || c->rot < 0 || c->rot > c->head_dim ||
       c->rot % 2 || !(c->rope_base > 0.0f) || !(c->eps > 0.0f)))
    return dfpo_err_set(
        err, DFPO_EDATA,
        "%s: sizes out of range (hidden %d, layers %d, heads %d, key/value heads "
        "%d, head size %d, MLP %d, positions %d, vocabulary %d, rotary channels %d, "
        "rotary base %g, eps %g)",
        what, c->n_embd, c->n_layer, c->n_head, c->n_kv_head, c->head_dim, c->d_ff, c->n_ctx,
        c->vocab_size, c->rot, (double)c->rope_base, (double)c->eps);
  return DFPO_OK;
}

/* The switches the family's tensors fix (its layout has the norms, biases
 * and MLP it has); the residual's form (GPT-NeoX), the GELU (GPT-J,
 * GPT-NeoX), the rotary form and fraction, tying and grouping are free. */
static int family_fits(const rdec_config *c) {
  int llama = c->family == RDEC_LLAMA;
  if (c->family < RDEC_GPTJ || c->family > RDEC_LLAMA || c->act < RDEC_ACT_GELU_TANH ||
      c->act > RDEC_ACT_SWIGLU || (c->act == RDEC_ACT_SWIGLU) != llama || c->rmsnorm != llama ||
      c->mlp_bias == llama || c->head_bias != (c->family == RDEC_GPTJ) ||
      c->bias != (c->family == RDEC_NEOX) || c->shared_ln != (c->family == RDEC_GPTJ) ||
      (c->shared_ln && !c->parallel) || (llama && c->parallel))
    return 0;
  return c->n_kv_head == c->n_head || llama;
}

int rdec_new(model_t **out, const rdec_config *c, dfpo_err *err) {
  *out = NULL;
  int rc = check_sizes(c, "rdec_new", err);
  if (!rc && !family_fits(c))
    rc = dfpo_err_set(err, DFPO_EDATA,
                      "rdec_new: the switches (activation %d, RMSNorm %d, biases %d/%d/%d, "
                      "parallel %d, shared norm %d, key/value heads %d of %d) are not those of "
                      "family %d's tensors",
                      c->act, c->rmsnorm, c->bias, c->mlp_bias, c->head_bias, c->parallel,
                      c->shared_ln, c->n_kv_head, c->n_head, c->family);
  rdec_model *m = NULL;
  if (!rc && !(rc = rdec_create(&m, c, MODEL_HEAD_NONE, NULL, NULL, OPS_DTYPE_F32, err)))
    *out = &m->base;
  return rc;
}

/* ------------------------------------------------------------ loading */

/* GPT-NeoX's fused rows (per head h: q, k, v, HS rows each, of cols
 * floats) in src become q | k | v in dst. */
static void neox_reorder(float *dst, const float *src, int NH, int HS, int cols) {
  size_t rb = (size_t)cols * sizeof(float);
  for (int h = 0; h < NH; h++)
    for (int s = 0; s < 3; s++)
      for (int d = 0; d < HS; d++)
        memcpy(dst + ((size_t)s * NH * HS + (size_t)h * HS + d) * cols,
               src + ((size_t)h * 3 * HS + (size_t)s * HS + d) * cols, rb);
}

/* Hugging Face buffers that are no weights */
static int is_buffer(const char *nm) {
  static const char *const sfx[] = {".attn.bias", ".attn.masked_bias", ".attention.bias",
                                    ".attention.masked_bias", ".rotary_emb.inv_freq"};
  size_t L = strlen(nm);
  for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
    size_t k = strlen(sfx[i]);
    if (L > k && !strcmp(nm + L - k, sfx[i]))
      return 1;
  }
  return 0;
}

static int read_tensor(rdec_model *m, st_set *set, const rdec_tensor *t, float *buf, float *tmp,
                       uint16_t *h16, const char *path, const char *cpath, dfpo_err *err) {
  int rows_each = t->rows / t->nsrc, rc = DFPO_OK;
  const rdec_config *c = &m->cfg;
  if (t->nsrc == 3 && c->n_kv_head != c->n_head) /* q | k | v of a grouped-query layer */
    rows_each = -1;
  size_t at = 0;
  for (int s = 0; s < t->nsrc && !rc; s++) {
    st_file *f = NULL;
    const st_entry *e = st_set_find(set, t->src[s], &f);
    if (!e)
      return dfpo_err_set(err, DFPO_EDATA, "%s: tensor '%s' missing (a %s of %s)", path, t->src[s],
                          family_name[c->family], cpath);
    int rows = rows_each;
    if (rows < 0)
      rows = (s == 0 ? c->n_head : c->n_kv_head) * c->head_dim;
    int64_t want[2] = {t->vec ? t->cols : rows, t->cols};
    if ((rc = st_check_shape(f, e, t->src[s], t->vec ? 1 : 2, want, "config.json", err)) ||
        (rc = st_read_f32(f, e, t->src[s], buf + at, err)))
      return rc;
    at += (size_t)rows * t->cols;
  }
  const float *h = buf;
  if (t->neox_qkv) {
    /* a bias reorders as a matrix of one column */
    neox_reorder(tmp, buf, c->n_head, c->head_dim, t->vec ? 1 : t->cols);
    h = tmp;
  }
  size_t n = (size_t)t->rows * t->cols;
  if (t->w16) { /* rounded as model_set_weight_dtype rounds (ops_f32_to_w16) */
    ops_f32_to_w16(h16, h, n, (int)m->wdtype);
    m->base.ops->upload(m->params16 + t->off, h16, n * sizeof(uint16_t));
  } else {
    m->base.ops->upload(m->params + t->off, h, n * sizeof(float));
  }
  return DFPO_OK;
}

int rdec_import_safetensors(model_t **out, const char *path, dfpo_err *err) {
  return rdec_import_safetensors_as(out, path, OPS_DTYPE_F32, err);
}

int rdec_import_safetensors_as(model_t **out, const char *path, ops_dtype wd, dfpo_err *err) {
  *out = NULL;
  if (wd != OPS_DTYPE_F32 && wd != OPS_DTYPE_BF16 && wd != OPS_DTYPE_F16)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: weight dtype %d unknown", path, (int)wd);
  char cpath[4096];
  rdec_config c;
  int rc = model_config_beside(path, cpath, sizeof cpath, err);
  if (rc || (rc = read_config(cpath, &c, err)))
    return rc;
  const char *type = family_name[c.family];
  st_set set;
  if ((rc = st_set_open(&set, path, err)))
    return rc;
  rdec_model *m = NULL;
  float *buf = NULL;
  uint16_t *h16 = NULL;
  if ((rc = rdec_create(&m, &c, MODEL_HEAD_NONE, NULL, NULL, wd, err)))
    goto done;
  size_t maxn = 0;
  for (int k = 0; k < m->ntensors; k++)
    if ((size_t)m->tensors[k].rows * m->tensors[k].cols > maxn)
      maxn = (size_t)m->tensors[k].rows * m->tensors[k].cols;
  if (!(buf = malloc(2 * maxn * sizeof(float))) ||
      (wd != OPS_DTYPE_F32 && !(h16 = malloc(maxn * sizeof(uint16_t))))) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  for (int k = 0; k < m->ntensors && !rc; k++)
    rc = read_tensor(m, &set, &m->tensors[k], buf, buf + maxn, h16, path, cpath, err);
  for (int s = 0; !rc && s < set.n; s++)
    for (int i = 0; i < set.files[s].n; i++) {
      const char *nm = set.files[s].ents[i].name;
      int known = is_buffer(nm);
      for (int k = 0; k < m->ntensors && !known; k++)
        for (int q = 0; q < m->tensors[k].nsrc && !known; q++)
          known = !strcmp(m->tensors[k].src[q], nm);
      /* a tied model's saved lm_head.weight is the embedding again */
      if (!known && !(c.tied && (!strcmp(nm, "lm_head.weight") || !strcmp(nm, "embed_out.weight"))))
        dfpo_warn("%s: tensor '%s' is not part of the %s; ignored", path, nm, type);
    }
  if (!rc) {
    *out = &m->base;
    m = NULL;
  }
done:
  free(buf);
  free(h16);
  rdec_destroy(m);
  st_set_close(&set);
  return rc;
}

/* ------------------------------------------------------------ passes */

static int missing_ops(const rdec_model *m, dfpo_err *err) {
  const ops_backend *o = m->base.ops;
  const rdec_config *c = &m->cfg;
  if (o->rope_fwd && (c->act != RDEC_ACT_SWIGLU || o->swiglu_fwd) &&
      (!c->rmsnorm || o->rmsnorm_fwd) && (c->n_kv_head == c->n_head || o->kv_repeat))
    return DFPO_OK;
  return dfpo_err_set(
      err, DFPO_EUSAGE,
      "%s: the %s backend lacks the rotary decoders' ops (rope_fwd%s%s%s); run "
      "it on the CPU (--device cpu)",
      family_name[c->family], o->name, c->act == RDEC_ACT_SWIGLU ? ", swiglu_fwd" : "",
      c->rmsnorm ? ", rmsnorm_fwd" : "", c->n_kv_head != c->n_head ? ", kv_repeat" : "");
}

/* The backward passes' ops beyond missing_ops'. */
static int missing_bwd_ops(const rdec_model *m, dfpo_err *err) {
  const ops_backend *o = m->base.ops;
  const rdec_config *c = &m->cfg;
  int rc = missing_ops(m, err);
  if (rc)
    return rc;
  if (o->rope_bwd && (c->act != RDEC_ACT_SWIGLU || o->swiglu_bwd) &&
      (c->act != RDEC_ACT_GELU_ERF || o->act_bwd) && (!c->rmsnorm || o->rmsnorm_bwd) &&
      (c->n_kv_head == c->n_head || o->kv_repeat_bwd))
    return DFPO_OK;
  return dfpo_err_set(
      err, DFPO_EUSAGE,
      "%s: the %s backend lacks the rotary decoders' backward ops (rope_bwd%s%s%s%s); "
      "train it on the CPU (--device cpu)",
      family_name[c->family], o->name, c->act == RDEC_ACT_SWIGLU ? ", swiglu_bwd" : "",
      c->act == RDEC_ACT_GELU_ERF ? ", act_bwd" : "", c->rmsnorm ? ", rmsnorm_bwd" : "",
      c->n_kv_head != c->n_head ? ", kv_repeat_bwd" : "");
}

/* Lays out (p NULL: only counts) the activations of N = B T tokens from
 * base p; with keep (a forward pass), the layers' inputs and the value
 * head's output too. Returns the floats taken. */
static size_t layout_ws(const rdec_model *m, rdec_ws *w, float *p, int B, int T, int keep) {
  const rdec_config *c = &m->cfg;
  size_t N = (size_t)B * T, C = (size_t)c->n_embd, I = (size_t)c->n_head * c->head_dim,
         QKV = I + 2 * (size_t)c->n_kv_head * c->head_dim, F = (size_t)c->d_ff;
  size_t n = 0;
#define TAKE(ptr, k) (w->ptr = p ? p + n : NULL, n += (k))
  TAKE(x, N * C);
  TAKE(h, N * C);
  TAKE(h2, N * C);
  TAKE(qkvr, N * QKV);
  TAKE(qkv, c->n_kv_head == c->n_head ? 0 : N * 3 * I);
  TAKE(att, (size_t)B * c->n_head * T * T);
  TAKE(y, N * I);
  TAKE(t, N * C);
  TAKE(xm, c->parallel ? 0 : N * C);
  TAKE(f, N * 2 * F);
  TAKE(fo, N * F);
  TAKE(mo, N * C);
  TAKE(st, 4 * N);
  TAKE(xs, keep ? (size_t)c->n_layer * N * C : 0);
  TAKE(vals, keep ? N : 0);
#undef TAKE
  if (c->n_kv_head == c->n_head)
    w->qkv = w->qkvr;
  if (!keep)
    w->xs = w->vals = NULL;
  return n;
}
/* the integer arrays of a pass: tok, pos, zeros [N], kstart [B] */
static size_t layout_ids(rdec_ws *w, int *p, int B, int T) {
  size_t N = (size_t)B * T;
  w->tok = p, w->pos = p ? p + N : NULL, w->zeros = p ? p + 2 * N : NULL;
  w->kstart = p ? p + 3 * N : NULL;
  return 3 * N + (size_t)B;
}

/* Grows *buf to n elements of size es (backend memory); the old contents
 * are not kept. */
static int grow(const ops_backend *o, void **buf, size_t *cap, size_t n, size_t es, dfpo_err *err) {
  if (n <= *cap)
    return DFPO_OK;
  void *a = o->alloc(n * es);
  if (!a)
    return dfpo_err_set(err, DFPO_ERUNTIME, "cannot allocate %zu MiB on %s", (n * es) >> 20,
                        o->name);
  o->free(*buf);
  *buf = a;
  *cap = n;
  return DFPO_OK;
}

/* ------------------------------------------------------------ LoRA */

/* Each family's linear layers, as its Hugging Face modules name them. */
static const rdec_lora_target lora_gptj[] = {
    {"attn.q_proj", RS_QKV, RP_Q},   {"attn.k_proj", RS_QKV, RP_K}, {"attn.v_proj", RS_QKV, RP_V},
    {"attn.out_proj", RS_O, RP_ALL}, {"mlp.fc_in", RS_FC, RP_ALL},  {"mlp.fc_out", RS_OUT, RP_ALL}};
static const rdec_lora_target lora_neox[] = {{"attention.query_key_value", RS_QKV, RP_ALL},
                                             {"attention.dense", RS_O, RP_ALL},
                                             {"mlp.dense_h_to_4h", RS_FC, RP_ALL},
                                             {"mlp.dense_4h_to_h", RS_OUT, RP_ALL}};
static const rdec_lora_target lora_llama[] = {
    {"self_attn.q_proj", RS_QKV, RP_Q}, {"self_attn.k_proj", RS_QKV, RP_K},
    {"self_attn.v_proj", RS_QKV, RP_V}, {"self_attn.o_proj", RS_O, RP_ALL},
    {"mlp.gate_proj", RS_FC, RP_GATE},  {"mlp.up_proj", RS_FC, RP_UP},
    {"mlp.down_proj", RS_OUT, RP_ALL}};

static const rdec_lora_target *lora_table(int family, int *n) {
  if (family == RDEC_GPTJ)
    return *n = (int)(sizeof lora_gptj / sizeof lora_gptj[0]), lora_gptj;
  if (family == RDEC_NEOX)
    return *n = (int)(sizeof lora_neox / sizeof lora_neox[0]), lora_neox;
  return *n = (int)(sizeof lora_llama / sizeof lora_llama[0]), lora_llama;
}

static const int slot_tensor[RS_N] = {L_QKVW, L_OW, L_FCW, L_OUTW};

/* A slot's weight: rows (outputs) and columns (inputs). */
static void slot_shape(const rdec_config *c, int slot, int *rows, int *cols) {
  int C = c->n_embd, I = c->n_head * c->head_dim, IK = c->n_kv_head * c->head_dim;
  int F2 = c->act == RDEC_ACT_SWIGLU ? 2 * c->d_ff : c->d_ff;
  *rows = slot == RS_QKV ? I + 2 * IK : slot == RS_O ? C : slot == RS_FC ? F2 : C;
  *cols = slot == RS_QKV ? C : slot == RS_O ? I : slot == RS_FC ? C : c->d_ff;
}
/* The rows of its slot a target's layer holds: [*row0, *row0 + *n). */
static void part_rows(const rdec_config *c, int slot, int part, int *row0, int *n) {
  int I = c->n_head * c->head_dim, IK = c->n_kv_head * c->head_dim, cols;
  *row0 = part == RP_K ? I : part == RP_V ? I + IK : part == RP_UP ? c->d_ff : 0;
  if (part == RP_Q)
    *n = I;
  else if (part == RP_K || part == RP_V)
    *n = IK;
  else if (part == RP_GATE || part == RP_UP)
    *n = c->d_ff;
  else
    slot_shape(c, slot, n, &cols);
}
/* Whether slot s needs the scratch Bf (not one adapter over all its rows). */
static int lora_full(const rdec_model *m, int s) {
  const rdec_lora *z = &m->lora;
  return z->nt[s] > 1 || (z->nt[s] == 1 && z->tab[z->tk[s][0]].part != RP_ALL);
}

/* The scratch of passes over up to ncap rows: u per slot, du, Bf per
 * slot, dBf (pointers into base; base NULL: only counts). */
typedef struct lora_scratch {
  float *u[RS_N], *du, *bf[RS_N], *dbf;
} lora_scratch;
static size_t lora_layout(const rdec_model *m, size_t ncap, float *base, lora_scratch *ls) {
  const rdec_lora *z = &m->lora;
  size_t n = 0, maxr = 0, maxbf = 0;
  for (int s = 0; s < RS_N; s++) {
    size_t R = (size_t)z->nt[s] * z->r;
    int rows, cols;
    slot_shape(&m->cfg, s, &rows, &cols);
    ls->u[s] = base ? base + n : NULL, n += ncap * R;
    maxr = R > maxr ? R : maxr;
    ls->bf[s] = NULL;
    if (lora_full(m, s)) {
      ls->bf[s] = base ? base + n : NULL, n += R * rows;
      maxbf = R * rows > maxbf ? R * rows : maxbf;
    }
  }
  ls->du = base ? base + n : NULL, n += ncap * maxr;
  ls->dbf = base ? base + n : NULL, n += maxbf;
  return n;
}
/* Scratch for passes of N rows. */
static int lora_reserve(rdec_model *m, size_t N, dfpo_err *err) {
  rdec_lora *z = &m->lora;
  if (!z->r || N <= z->ncap)
    return DFPO_OK;
  lora_scratch ls;
  size_t need = lora_layout(m, N, NULL, &ls);
  int rc = grow(m->base.ops, (void **)&z->scratch, &z->scratch_floats, need, sizeof(float), err);
  if (!rc)
    z->ncap = N;
  return rc;
}

/* out[N, the slot's rows] += the adapters of layer l's slot s applied to
 * x, when adapted and on (u kept in the scratch for the backward pass,
 * which recomputes the layer first). */
static void lora_apply(const rdec_model *m, int l, int s, float *out, const float *x, int N) {
  const rdec_lora *z = &m->lora;
  int i = z->r && z->on ? z->first[l][s] : -1;
  if (i < 0)
    return;
  const ops_backend *o = m->base.ops;
  lora_scratch ls;
  lora_layout(m, z->ncap, z->scratch, &ls);
  int rows, cols, R = z->nt[s] * z->r;
  slot_shape(&m->cfg, s, &rows, &cols);
  const float *A = z->params + z->tensors[i].off, *Bf = z->params + z->tensors[i + z->nt[s]].off;
  if (ls.bf[s]) {
    /* each Bt [r, its rows] into its columns of Bf [nt r, rows] */
    o->zero(ls.bf[s], (size_t)R * rows * sizeof(float));
    for (int t = 0; t < z->nt[s]; t++) {
      const rdec_lora_target *g = &z->tab[z->tk[s][t]];
      int row0, n;
      part_rows(&m->cfg, s, g->part, &row0, &n);
      const float *bt = z->params + z->tensors[i + z->nt[s] + t].off;
      for (int j = 0; j < z->r; j++)
        o->copy(ls.bf[s] + ((size_t)t * z->r + j) * rows + row0, bt + (size_t)j * n,
                (size_t)n * sizeof(float));
    }
    Bf = ls.bf[s];
  }
  model_lora_fwd(o, out, x, A, Bf, ls.u[s], N, cols, rows, R, z->alpha / (float)z->r);
}

/* Its backward pass, after lora_apply recomputed the layer: dout the
 * output's gradient, x the input; dx +=, the adapters' gradients +=. */
static void lora_backward(const rdec_model *m, int l, int s, float *dx, const float *dout,
                          const float *x, int N) {
  const rdec_lora *z = &m->lora;
  int i = z->r && z->fwd_on ? z->first[l][s] : -1;
  if (i < 0)
    return;
  const ops_backend *o = m->base.ops;
  lora_scratch ls;
  lora_layout(m, z->ncap, z->scratch, &ls);
  int rows, cols, R = z->nt[s] * z->r, nt = z->nt[s];
  slot_shape(&m->cfg, s, &rows, &cols);
  const float *A = z->params + z->tensors[i].off;
  float *dA = z->grads + z->tensors[i].off, *dB = z->grads + z->tensors[i + nt].off;
  const float *Bf = ls.bf[s] ? ls.bf[s] : z->params + z->tensors[i + nt].off;
  if (ls.bf[s]) {
    /* dBf = u^T dout, then each Bt's columns of it into its gradient */
    o->zero(ls.dbf, (size_t)R * rows * sizeof(float));
    o->matmul_bwd(NULL, ls.dbf, NULL, ls.u[s], dout, Bf, N, rows, R);
    for (int t = 0; t < nt; t++) {
      int row0, n;
      part_rows(&m->cfg, s, z->tab[z->tk[s][t]].part, &row0, &n);
      float *gb = z->grads + z->tensors[i + nt + t].off;
      for (int j = 0; j < z->r; j++)
        o->add(gb + (size_t)j * n, gb + (size_t)j * n,
               ls.dbf + ((size_t)t * z->r + j) * rows + row0, (size_t)n);
    }
  }
  model_lora_bwd(o, dx, dA, ls.bf[s] ? NULL : dB, ls.du, dout, x, ls.u[s], A, Bf, N, cols, rows, R,
                 z->alpha / (float)z->r);
}

static const char *const fam_label[] = {"GPT-J", "GPT-NeoX", "Llama"};

static int rdec_add_lora(rdec_model *m, const model_lora_config *c, uint64_t seed, dfpo_err *err) {
  rdec_lora *z = &m->lora;
  const rdec_config *cf = &m->cfg;
  const char *fam = family_name[cf->family];
  int L = cf->n_layer, rc, ntab;
  unsigned bits;
  if (z->r)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the model already has LoRA adapters", fam);
  const rdec_lora_target *tab = lora_table(cf->family, &ntab);
  const char *names[RDEC_LORA_MAX];
  for (int k = 0; k < ntab; k++)
    names[k] = tab[k].name;
  if ((rc = model_lora_check(c, cf->n_embd, fam, err)) ||
      (rc = model_lora_targets(c->targets, names, ntab, fam_label[cf->family], &bits, err)))
    return rc;
  z->tab = tab;
  z->ntab = ntab;
  memset(z->nt, 0, sizeof z->nt);
  int per = 0;
  for (int k = 0; k < ntab; k++)
    if ((bits >> k) & 1) {
      z->tk[tab[k].slot][z->nt[tab[k].slot]++] = k;
      per++;
    }
  z->tensors = calloc((size_t)(2 * per * L + 2), sizeof *z->tensors);
  z->first = malloc((size_t)L * sizeof *z->first);
  if (!z->tensors || !z->first)
    goto oom;
  z->nparams = 0;
  z->ntensors = 0;
  z->r = c->rank;
  for (int l = 0; l < L; l++)
    for (int sl = 0; sl < RS_N; sl++) {
      z->first[l][sl] = z->nt[sl] ? z->ntensors : -1;
      const char *wname = m->tensors[m->layer[l][slot_tensor[sl]]].name;
      /* the layer's prefix, its weight's name to the third dot
       * ("transformer.h.N.", "gpt_neox.layers.N.", "model.layers.N.") */
      int plen = 0;
      for (int dots = 0, q = 0; wname[q] && dots < 3; q++)
        if (wname[q] == '.' && ++dots == 3)
          plen = q + 1;
      for (int ab = 0; ab < 2; ab++)
        for (int t = 0; t < z->nt[sl]; t++) {
          const rdec_lora_target *g = &tab[z->tk[sl][t]];
          int rows, cols, row0, n;
          slot_shape(cf, sl, &rows, &cols);
          part_rows(cf, sl, g->part, &row0, &n);
          rdec_tensor *tt = &z->tensors[z->ntensors++];
          snprintf(tt->name, sizeof tt->name, "%.*s%s.lora_%c.weight", plen, wname, g->name,
                   ab ? 'B' : 'A');
          tt->off = z->nparams;
          tt->rows = c->rank;
          tt->cols = ab ? n : cols;
          z->nparams += (size_t)tt->rows * tt->cols;
        }
    }
  int nadapt = z->ntensors;
  z->head = -1;
  if (m->vhead >= 0) {
    /* the value head trains with the adapters: a copy of it joins them */
    z->head = z->ntensors;
    for (int wb = 0; wb < 2; wb++) {
      rdec_tensor *tt = &z->tensors[z->ntensors++];
      *tt = m->tensors[m->vhead + wb];
      tt->off = z->nparams;
      z->nparams += (size_t)tt->rows * tt->cols;
    }
  }
  float *host = NULL;
  if (!(z->params = m->base.ops->alloc(z->nparams * sizeof(float))) ||
      !(host = calloc(z->nparams, sizeof(float))))
    goto oom;
  dfpo_rng rng;
  dfpo_rng_init(&rng, seed, DFPO_STREAM_INIT);
  for (int i = 0; i < nadapt; i++) {
    const rdec_tensor *tt = &z->tensors[i];
    if (strstr(tt->name, ".lora_A."))
      model_lora_init_a(host + tt->off, tt->rows, tt->cols, &rng);
  }
  if (z->head >= 0)
    m->base.ops->download(host + z->tensors[z->head].off, P(m, m->vhead),
                          (size_t)(cf->n_embd + 1) * sizeof(float));
  m->base.ops->upload(z->params, host, z->nparams * sizeof(float));
  free(host);
  z->alpha = c->alpha;
  z->targets = bits;
  z->on = 1;
  z->ncap = 0;
  /* the base is frozen: its training state goes */
  m->base.ops->free(m->train_block);
  m->train_block = m->grads = m->m1 = m->m2 = NULL;
  m->base.grads_zero = 0;
  m->fB = 0;
  return DFPO_OK;
oom:
  m->base.ops->free(z->params);
  free(z->tensors);
  free(z->first);
  memset(z, 0, sizeof *z);
  return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory for the LoRA adapters", fam);
}

/* The model's adapter config as model_add_lora takes it (targets into
 * buf[n]). */
static model_lora_config lora_config_of(const rdec_model *m, char *buf, size_t n) {
  const rdec_lora *z = &m->lora;
  const char *names[RDEC_LORA_MAX];
  for (int k = 0; k < z->ntab; k++)
    names[k] = z->tab[k].name;
  model_lora_target_list(z->targets, names, z->ntab, buf, n);
  return (model_lora_config){z->r, z->alpha, buf};
}

/* out = norm(x) with weight w and bias b (tensor indices); st[2N] receives
 * a LayerNorm's mean and rstd */
static void norm(const rdec_model *m, float *out, float *st, const float *x, int w, int b, int N) {
  const ops_backend *o = m->base.ops;
  int C = m->cfg.n_embd;
  if (m->cfg.rmsnorm)
    o->rmsnorm_fwd(out, x, P(m, w), N, C, m->cfg.eps);
  else
    o->layernorm_fwd(out, st, st + N, x, P(m, w), P(m, b), N, C, m->cfg.eps);
}
/* dx += the gradient through norm (its input x, statistics st) of dout */
static void norm_bwd(const rdec_model *m, float *dx, const float *dout, const float *st,
                     const float *x, int w, int b, int N) {
  const ops_backend *o = m->base.ops;
  int C = m->cfg.n_embd;
  if (m->cfg.rmsnorm)
    /* a frozen base (LoRA): the weight's gradient into a sink */
    o->rmsnorm_bwd(dx, m->grads ? G(m, w) : m->gw_.dpos, dout, x, P(m, w), N, C, m->cfg.eps);
  else
    o->layernorm_bwd(dx, G(m, w), G(m, b), dout, x, P(m, w), st, st + N, N, C);
}

/* out[M, N] = x[M, K] @ W^T + bias, W the base tensor i in whichever
 * precision the model keeps it (matmul_fwd or matmul_fwd_w16). */
static void linear(const rdec_model *m, float *out, const float *x, int i, const float *bias, int M,
                   int K, int N) {
  const rdec_tensor *t = &m->tensors[i];
  if (t->w16)
    m->base.ops->matmul_fwd_w16(out, x, m->params16 + t->off, bias, M, K, N, (int)m->wdtype);
  else
    m->base.ops->matmul_fwd(out, x, m->params + t->off, bias, M, K, N);
}
/* layer l's matrix in slot s (its bias the slot after) */
static void layer_linear(const rdec_model *m, int l, int s, float *out, const float *x, int M,
                         int K, int N) {
  linear(m, out, x, m->layer[l][s], LP(m, l, s + 1), M, K, N);
}
/* The backward pass of linear over base tensor i (dw and db its weight's
 * and bias's gradients, either NULL when not wanted) in the weight's
 * precision: a 16-bit weight is frozen (a LoRA base: dw and db NULL), so
 * only the input gradient flows through it (matmul_bwd_w16). */
static void linear_bwd(const rdec_model *m, int i, float *dinp, float *dw, float *db,
                       const float *dout, const float *x, int M, int K, int N) {
  const rdec_tensor *t = &m->tensors[i];
  if (t->w16)
    m->base.ops->matmul_bwd_w16(dinp, dout, m->params16 + t->off, M, K, N, (int)m->wdtype);
  else
    m->base.ops->matmul_bwd(dinp, dw, db, dout, x, m->params + t->off, M, K, N);
}
/* linear_bwd of layer l's matrix in slot s with its bias */
static void layer_linear_bwd(const rdec_model *m, int l, int s, float *dinp, const float *dout,
                             const float *x, int M, int K, int N) {
  linear_bwd(m, m->layer[l][s], dinp, LG(m, l, s), LG(m, l, s + 1), dout, x, M, K, N);
}
/* out[N, C] = the embedding's rows tok[n] (whichever precision it is in) */
static void embed(const rdec_model *m, float *out, const rdec_ws *w, int N) {
  const rdec_tensor *t = &m->tensors[m->wte];
  if (t->w16)
    m->base.ops->encoder_fwd_w16(out, w->tok, w->zeros, m->params16 + t->off, m->zero, N,
                                 m->cfg.n_embd, (int)m->wdtype);
  else
    m->base.ops->encoder_fwd(out, w->tok, w->zeros, m->params + t->off, m->zero, N, m->cfg.n_embd);
}

/* w->mo[N, C] = the MLP of in[N, C] (w->f its pre-activation, w->fo its
 * activation) */
static void mlp(const rdec_model *m, const rdec_ws *w, int l, const float *in, int N) {
  const ops_backend *o = m->base.ops;
  const rdec_config *c = &m->cfg;
  int C = c->n_embd, F = c->d_ff;
  size_t NF = (size_t)N * F;
  if (c->act == RDEC_ACT_SWIGLU) {
    layer_linear(m, l, L_FCW, w->f, in, N, C, 2 * F);
    lora_apply(m, l, RS_FC, w->f, in, N);
    o->swiglu_fwd(w->fo, w->f, N, F);
  } else {
    layer_linear(m, l, L_FCW, w->f, in, N, C, F);
    lora_apply(m, l, RS_FC, w->f, in, N);
    if (c->act == RDEC_ACT_GELU_TANH)
      o->gelu_fwd(w->fo, w->f, NF);
    else
      o->act_fwd(w->fo, w->f, NF, OPS_ACT_GELU_ERF);
  }
  layer_linear(m, l, L_OUTW, w->mo, w->fo, N, F, C);
  lora_apply(m, l, RS_OUT, w->mo, w->fo, N);
}

/* Layer l over w->x [B, T, C] at positions w->pos, in place, its
 * intermediates left in w. With a cache: the keys and values go to cache
 * rows t0..t0+T-1 and a single token (T 1) attends to the cache rows
 * kstart..t0. */
static void layer_fwd(const rdec_model *m, const rdec_ws *w, int l, int B, int T, int t0, int Tmax,
                      int cache) {
  const ops_backend *o = m->base.ops;
  const rdec_config *c = &m->cfg;
  int N = B * T, C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, HS = c->head_dim;
  int I = NH * HS, QKV = I + 2 * NKV * HS;
  size_t NC = (size_t)N * C;
  const int *L = m->layer[l];
  norm(m, w->h, w->st, w->x, L[L_LN1W], L[L_LN1B], N);
  layer_linear(m, l, L_QKVW, w->qkvr, w->h, N, C, QKV);
  lora_apply(m, l, RS_QKV, w->qkvr, w->h, N);
  o->rope_fwd(w->qkvr, QKV, w->pos, N, NH, HS, c->rot, c->interleaved, c->rope_base);
  o->rope_fwd(w->qkvr + I, QKV, w->pos, N, NKV, HS, c->rot, c->interleaved, c->rope_base);
  /* the cache holds the NKV key/value heads as computed; a decoding step
   * reads them grouped, the passes over whole rows through the repeated
   * layout of attention_fwd */
  if (cache)
    o->kv_write(m->kc[l], m->vc[l], w->qkvr, B, T, t0, Tmax, I, NKV * HS);
  if (cache && T == 1) {
    o->attention_step(w->y, w->qkvr, m->kc[l], m->vc[l], w->kstart, B, t0 + 1, Tmax, I, NH, NKV);
  } else {
    if (NKV != NH)
      o->kv_repeat(w->qkv, w->qkvr, N, NH, NKV, HS);
    o->attention_fwd(w->y, w->att, w->qkv, w->kstart, B, T, I, NH);
  }
  layer_linear(m, l, L_OW, w->t, w->y, N, I, C);
  lora_apply(m, l, RS_O, w->t, w->y, N);
  if (c->parallel) {
    /* x + attn(ln1 x) + mlp(ln1 x or ln2 x), both from the same x */
    if (c->shared_ln) {
      mlp(m, w, l, w->h, N);
    } else {
      norm(m, w->h2, w->st + 2 * N, w->x, L[L_LN2W], L[L_LN2B], N);
      mlp(m, w, l, w->h2, N);
    }
    o->add(w->x, w->x, w->t, NC);
    o->add(w->x, w->x, w->mo, NC);
  } else {
    o->add(w->xm, w->x, w->t, NC);
    norm(m, w->h2, w->st + 2 * N, w->xm, L[L_LN2W], L[L_LN2B], N);
    mlp(m, w, l, w->h2, N);
    o->add(w->x, w->xm, w->mo, NC);
  }
}

/* The layers over w->x; a forward pass (w->xs set) keeps each layer's
 * input. */
static void run_layers(const rdec_model *m, const rdec_ws *w, int B, int T, int t0, int Tmax,
                       int cache) {
  size_t NC = (size_t)B * T * m->cfg.n_embd;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    if (w->xs)
      m->base.ops->copy(w->xs + l * NC, w->x, NC * sizeof(float));
    layer_fwd(m, w, l, B, T, t0, Tmax, cache);
  }
}

/* logits[N, V] of the final norm's output h[N, C] */
static void head_linear(const rdec_model *m, float *logits, const float *h, int N) {
  linear(m, logits, h, m->cfg.tied ? m->wte : m->headw, P(m, m->headb), N, m->cfg.n_embd,
         m->cfg.vocab_size);
}

/* logits[N, V] of the final hidden states x[N, C] (h [N, C] receives the
 * final norm's output, st [2N] its statistics) */
static void lm_head(const rdec_model *m, float *logits, float *h, float *st, const float *x,
                    int N) {
  norm(m, h, st, x, m->lnfw, m->lnfb, N);
  head_linear(m, logits, h, N);
}

/* Checks the token ids and left padding of a batch and fills the host
 * arrays tok (pads as 0), pos (t - kstart, 0 on padding), zeros and ks. */
static int host_ids(const rdec_model *m, const int *tokens, const int *kstart, int B, int T, int *h,
                    const char *what, dfpo_err *err) {
  size_t N = (size_t)B * T;
  int *tok = h, *pos = h + N, *zeros = h + 2 * N, *ks = h + 3 * N;
  for (int b = 0; b < B; b++) {
    ks[b] = kstart ? kstart[b] : 0;
    if (ks[b] < 0 || ks[b] >= T)
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: row %d: padding %d leaves no token of %d", what, b,
                          ks[b], T);
    if (T - ks[b] > m->cfg.n_ctx)
      return dfpo_err_set(err, DFPO_EUSAGE, "%s: row %d has %d tokens (n_ctx %d)", what, b,
                          T - ks[b], m->cfg.n_ctx);
    for (int t = 0; t < T; t++) {
      size_t i = (size_t)b * T + t;
      int id = tokens[i];
      if (t >= ks[b] && (id < 0 || id >= m->cfg.vocab_size))
        return dfpo_err_set(err, DFPO_EUSAGE, "%s: token id %d at row %d column %d (vocabulary %d)",
                            what, id, b, t, m->cfg.vocab_size);
      tok[i] = t < ks[b] ? 0 : id;
      pos[i] = t < ks[b] ? 0 : t - ks[b];
      zeros[i] = 0;
    }
  }
  return DFPO_OK;
}

static int rdec_forward(rdec_model *m, const model_batch *b, dfpo_err *err) {
  const ops_backend *o = m->base.ops;
  int B = b->B, T = b->T, V = m->cfg.vocab_size;
  m->fB = 0;
  m->have_lm = 0;
  m->base.last_logits = NULL;
  int rc = missing_ops(m, err);
  if (rc)
    return rc;
  if (B <= 0 || T <= 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: empty batch (%d x %d)", family_name[m->cfg.family],
                        B, T);
  size_t N = (size_t)B * T, ni = layout_ids(&m->fw, NULL, B, T) + N;
  int *h = malloc(ni * sizeof(int));
  if (!h)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  rc = host_ids(m, b->tokens, b->kstart, B, T, h, family_name[m->cfg.family], err);
  int hf = b->head_from;
  size_t NH = (size_t)B * (T - hf);
  size_t nf = layout_ws(m, &m->fw, NULL, B, T, 1) + N * V + 3 * N + (hf ? NH * m->cfg.n_embd : 0);
  if (!rc)
    rc = grow(o, (void **)&m->act, &m->act_floats, nf, sizeof(float), err);
  if (!rc)
    rc = grow(o, (void **)&m->ids, &m->ids_cap, ni, sizeof(int), err);
  if (rc) {
    free(h);
    return rc;
  }
  if (!rc)
    rc = lora_reserve(m, N, err);
  if (rc) {
    free(h);
    return rc;
  }
  size_t at = layout_ws(m, &m->fw, m->act, B, T, 1);
  m->logits = m->act + at;
  m->lse = m->logits + N * V;
  m->lp = m->lse + N;
  m->ent = m->lp + N;
  m->hh = hf ? m->ent + N : NULL;
  layout_ids(&m->fw, m->ids, B, T);
  o->upload(m->ids, h, (ni - N) * sizeof(int));
  free(h);
  const rdec_ws *w = &m->fw;
  embed(m, w->x, w, (int)N);
  run_layers(m, w, B, T, 0, 0, 0);
  norm(m, w->h, w->st, w->x, m->lnfw, m->lnfb, (int)N);
  if (hf)
    model_head_rows(o, m->hh, w->h, B, T, hf, (size_t)m->cfg.n_embd, 0);
  head_linear(m, m->logits, hf ? m->hh : w->h, (int)NH);
  m->fB = B, m->fT = T, m->fh = hf;
  m->lora.fwd_on = m->lora.on;
  return DFPO_OK;
}

static int rdec_lm_logprobs(rdec_model *m, const int *targets, float *logp, float *ent,
                            dfpo_err *err) {
  if (!m->fB)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: lm_logprobs before a forward pass",
                        family_name[m->cfg.family]);
  const ops_backend *o = m->base.ops;
  int V = m->cfg.vocab_size, B = m->fB, T = m->fT, hf = m->fh;
  size_t N = (size_t)B * T, NH = (size_t)B * (T - hf);
  int *tg = malloc(NH * sizeof(int));
  float *hv = hf ? malloc(NH * sizeof(float)) : NULL;
  if (!tg || (hf && !hv)) {
    free(tg);
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  }
  int rc = model_head_targets(tg, targets, B, T, hf, V, family_name[m->cfg.family], err);
  if (rc) {
    free(tg);
    free(hv);
    return rc;
  }
  int *d_tg = m->ids + (m->ids_cap - N);
  o->upload(d_tg, tg, NH * sizeof(int));
  free(tg);
  /* the entropy always: lm_backward may want its gradient */
  o->logits_stats(m->lse, m->lp, m->ent, m->logits, d_tg, (int)NH, V, V);
  if (logp)
    model_head_download(o, logp, m->lp, hv, B, T, hf);
  if (ent)
    model_head_download(o, ent, m->ent, hv, B, T, hf);
  free(hv);
  m->base.last_logits = m->logits;
  m->have_lm = 1;
  return DFPO_OK;
}

/* ------------------------------------------------------------ backward */

static int rdec_ensure_train(rdec_model *m, dfpo_err *err) {
  if (m->params_borrowed)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: a base or adapter view does not train (its weights are another "
                        "model's)",
                        family_name[m->cfg.family]);
  /* LoRA trains the adapters alone: the frozen base may be in 16 bits */
  rdec_lora *z = &m->lora;
  if (z->r)
    return model_alloc_train(&m->base, z->nparams, &z->train_block, &z->grads, &z->m1, &z->m2, err);
  if (m->wdtype != OPS_DTYPE_F32)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: the model keeps its weights in %s and does not train (a frozen "
                        "reference, judge or scorer, or a LoRA base); train an fp32 model",
                        family_name[m->cfg.family], ops_dtype_name(m->wdtype));
  return model_alloc_train(&m->base, m->nparams, &m->train_block, &m->grads, &m->m1, &m->m2, err);
}

/* Lays out the backward pass's scratch for the last forward pass. */
static int layout_grad(rdec_model *m, dfpo_err *err) {
  const rdec_config *c = &m->cfg;
  size_t N = (size_t)m->fB * m->fT, C = (size_t)c->n_embd, I = (size_t)c->n_head * c->head_dim,
         QKV = I + 2 * (size_t)c->n_kv_head * c->head_dim, F = (size_t)c->d_ff;
  int gqa = c->n_kv_head != c->n_head;
  size_t need = 3 * N * C + N * I + (gqa ? N * 3 * I : 0) + N * QKV + 3 * N * F + 3 * N + C;
  int rc = grow(m->base.ops, (void **)&m->bwd, &m->bwd_floats, need, sizeof(float), err);
  if (rc)
    return rc;
  rdec_grad_ws *g = &m->gw_;
  float *p = m->bwd;
  g->gx = p, p += N * C;
  g->dh = p, p += N * C;
  g->dh2 = p, p += N * C;
  g->dy = p, p += N * I;
  g->dqkvr = p, p += N * QKV;
  g->dqkv = g->dqkvr;
  if (gqa)
    g->dqkv = p, p += N * 3 * I;
  g->dfo = p, p += N * F;
  g->df = p, p += 2 * N * F;
  g->dlp = p, p += N;
  g->dent = p, p += N;
  g->dv = p, p += N;
  g->dpos = p;
  return DFPO_OK;
}

/* Layer l's backward pass: its forward recomputed from its saved input,
 * then m->gw_.gx, the gradient of its output, becomes its input's, the
 * parameters' gradients accumulated. */
static void layer_bwd(rdec_model *m, int l) {
  const ops_backend *o = m->base.ops;
  const rdec_config *c = &m->cfg;
  const rdec_ws *w = &m->fw;
  const rdec_grad_ws *g = &m->gw_;
  const int *L = m->layer[l];
  int B = m->fB, T = m->fT, N = B * T, C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head,
      HS = c->head_dim, F = c->d_ff, I = NH * HS, QKV = I + 2 * NKV * HS;
  size_t NC = (size_t)N * C, NF = (size_t)N * F;
  const float *xin = w->xs + l * NC;
  o->copy(w->x, xin, NC * sizeof(float));
  layer_fwd(m, w, l, B, T, 0, 0, 0);
  /* the MLP, from the gradient of its output (the layer's output's) */
  const float *min = c->shared_ln ? w->h : w->h2;
  float *dmin = c->shared_ln ? g->dh : g->dh2;
  o->zero(g->dfo, NF * sizeof(float));
  layer_linear_bwd(m, l, L_OUTW, g->dfo, g->gx, w->fo, N, F, C);
  lora_backward(m, l, RS_OUT, g->dfo, g->gx, w->fo, N);
  if (c->act == RDEC_ACT_SWIGLU)
    o->swiglu_bwd(g->df, w->f, g->dfo, N, F);
  else if (c->act == RDEC_ACT_GELU_TANH)
    o->gelu_bwd(g->df, w->f, g->dfo, NF);
  else
    o->act_bwd(g->df, w->f, g->dfo, NF, OPS_ACT_GELU_ERF);
  o->zero(dmin, NC * sizeof(float));
  layer_linear_bwd(m, l, L_FCW, dmin, g->df, min, N, C, c->act == RDEC_ACT_SWIGLU ? 2 * F : F);
  lora_backward(m, l, RS_FC, dmin, g->df, min, N);
  if (!c->parallel) /* x_out = xm + mlp(ln2 xm): gx becomes xm's gradient */
    norm_bwd(m, g->gx, g->dh2, w->st + 2 * N, w->xm, L[L_LN2W], L[L_LN2B], N);
  /* the attention, from the gradient of its output (gx: the layer's
   * output's when parallel, xm's when sequential) */
  o->zero(g->dy, (size_t)N * I * sizeof(float));
  layer_linear_bwd(m, l, L_OW, g->dy, g->gx, w->y, N, I, C);
  lora_backward(m, l, RS_O, g->dy, g->gx, w->y, N);
  o->attention_bwd(g->dqkv, g->dy, w->qkv, w->att, w->kstart, B, T, I, NH);
  if (NKV != NH)
    o->kv_repeat_bwd(g->dqkvr, g->dqkv, N, NH, NKV, HS);
  o->rope_bwd(g->dqkvr, QKV, w->pos, N, NH, HS, c->rot, c->interleaved, c->rope_base);
  o->rope_bwd(g->dqkvr + I, QKV, w->pos, N, NKV, HS, c->rot, c->interleaved, c->rope_base);
  if (!c->shared_ln) /* with GPT-J's shared norm, dh already holds the MLP's part */
    o->zero(g->dh, NC * sizeof(float));
  layer_linear_bwd(m, l, L_QKVW, g->dh, g->dqkvr, w->h, N, C, QKV);
  lora_backward(m, l, RS_QKV, g->dh, g->dqkvr, w->h, N);
  /* the norms into the residual's gradient (which passes through) */
  if (c->parallel && !c->shared_ln)
    norm_bwd(m, g->gx, g->dh2, w->st + 2 * N, xin, L[L_LN2W], L[L_LN2B], N);
  norm_bwd(m, g->gx, g->dh, w->st, xin, L[L_LN1W], L[L_LN1B], N);
}

/* From m->gw_.dh, the gradient of the final norm's output, through the
 * layers into the embedding. The forward pass is spent. */
static void trunk_backward(rdec_model *m) {
  const ops_backend *o = m->base.ops;
  const rdec_ws *w = &m->fw;
  const rdec_grad_ws *g = &m->gw_;
  int N = m->fB * m->fT, C = m->cfg.n_embd;
  m->base.grads_zero = 0;
  m->have_lm = 0;
  m->base.last_logits = NULL;
  o->zero(g->gx, (size_t)N * C * sizeof(float));
  norm_bwd(m, g->gx, g->dh, w->st, w->x, m->lnfw, m->lnfb, N);
  /* the layers recomputed with the adapters as the forward pass ran them */
  int on = m->lora.on;
  m->lora.on = m->lora.fwd_on;
  for (int l = m->cfg.n_layer - 1; l >= 0; l--)
    layer_bwd(m, l);
  m->lora.on = on;
  if (m->grads) /* a frozen base (LoRA) needs no gradient below the first layer */
    o->encoder_bwd(G(m, m->wte), g->dpos, g->gx, w->tok, w->zeros, N, C);
  m->fB = 0;
}

/* What a backward pass needs: a forward pass, the ops, the training state
 * and the scratch. */
static int need_bwd(rdec_model *m, const char *what, dfpo_err *err) {
  const char *fam = family_name[m->cfg.family];
  if (!m->fB)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: %s needs a forward pass (each backward pass spends "
                        "one)",
                        fam, what);
  int rc = missing_bwd_ops(m, err);
  if (!rc)
    rc = rdec_ensure_train(m, err);
  return rc ? rc : layout_grad(m, err);
}

/* The backward pass from the LM head (its logits' gradient dlogits when
 * given, else that of sum dlogp logp + dent ent) and, with dvalues, the
 * value head on the same final norm's output, through the trunk once (the
 * value head on the policy's trunk: model_lm_value_backward). */
static int rdec_lm_value_backward(rdec_model *m, const float *dlogp, const float *dent,
                                  const float *dlogits, const float *dvalues, dfpo_err *err) {
  const char *fam = family_name[m->cfg.family];
  if (!m->have_lm)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: an LM backward pass needs model_lm_logprobs first",
                        fam);
  if (dvalues && m->vhead < 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the model has no value head", fam);
  int rc = need_bwd(m, "lm_backward", err);
  if (rc)
    return rc;
  const ops_backend *o = m->base.ops;
  int B = m->fB, T = m->fT, hf = m->fh;
  size_t N = (size_t)B * T, NH = (size_t)B * (T - hf);
  int V = m->cfg.vocab_size, C = m->cfg.n_embd;
  if (dlogits) {
    /* the logits become their gradient */
    o->upload(m->logits, dlogits, NH * V * sizeof(float));
  } else {
    float *hv = NULL;
    if (hf && (dlogp || dent) && !(hv = malloc(NH * sizeof(float))))
      return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    if (dlogp)
      model_head_upload(o, m->gw_.dlp, dlogp, hv, B, T, hf);
    else
      o->zero(m->gw_.dlp, NH * sizeof(float));
    if (dent)
      model_head_upload(o, m->gw_.dent, dent, hv, B, T, hf);
    free(hv);
    const int *d_tg = m->ids + (m->ids_cap - N); /* lm_logprobs' targets */
    o->logits_bwd(m->logits, m->lse, m->ent, d_tg, m->gw_.dlp, dent ? m->gw_.dent : NULL, (int)NH,
                  V, V);
  }
  int hw = m->cfg.tied ? m->wte : m->headw;
  /* narrowed, the head's rows of the gradient go through gx (free until
   * trunk_backward) to theirs of dh */
  float *dh = hf ? m->gw_.gx : m->gw_.dh;
  o->zero(dh, NH * C * sizeof(float));
  linear_bwd(m, hw, dh, G(m, hw), G(m, m->headb), m->logits, hf ? m->hh : m->fw.h, (int)NH, C, V);
  if (hf) {
    o->zero(m->gw_.dh, N * C * sizeof(float));
    model_head_rows(o, m->gw_.dh, dh, B, T, hf, (size_t)C, 1);
  }
  if (dvalues) {
    float *vg = vh_grad(m);
    o->upload(m->gw_.dv, dvalues, N * sizeof(float));
    o->matmul_bwd(m->gw_.dh, vg, vg + C, m->gw_.dv, m->fw.h, vh_param(m), (int)N, C, 1);
  }
  trunk_backward(m);
  return DFPO_OK;
}

static int rdec_lm_backward(rdec_model *m, const float *dlogp, const float *dent, dfpo_err *err) {
  return rdec_lm_value_backward(m, dlogp, dent, NULL, NULL, err);
}

/* The mean next-token cross-entropy over targets >= 0 and its gradient. */
static int rdec_lm_loss(rdec_model *m, const model_batch *b, const int *targets, float *loss,
                        dfpo_err *err) {
  size_t n = (size_t)b->B * b->T, k = 0;
  float *lp = malloc((n ? n : 1) * sizeof(float));
  if (!lp)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  int rc = rdec_forward(m, b, err);
  if (!rc)
    rc = rdec_lm_logprobs(m, targets, lp, NULL, err);
  if (!rc) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
      if (targets[i] >= 0)
        s -= lp[i], k++;
    *loss = k ? (float)(s / (double)k) : 0.0f;
    for (size_t i = 0; i < n; i++)
      lp[i] = targets[i] >= 0 ? -1.0f / (float)k : 0.0f;
    if (k)
      rc = rdec_lm_backward(m, lp, NULL, err);
  }
  free(lp);
  return rc;
}

static int need_value(rdec_model *m, dfpo_err *err) {
  if (!m->fB)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the value head before a forward pass",
                        family_name[m->cfg.family]);
  if (m->vhead < 0)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: the model has no value head (model_new_like makes "
                        "one)",
                        family_name[m->cfg.family]);
  return DFPO_OK;
}

/* values[N] = the final norm's output . v_w + v_b at every position */
static int rdec_value_forward(rdec_model *m, float *values, dfpo_err *err) {
  int rc = need_value(m, err);
  if (rc)
    return rc;
  int N = m->fB * m->fT;
  const float *vw = vh_param(m);
  m->base.ops->matmul_fwd(m->fw.vals, m->fw.h, vw, vw + m->cfg.n_embd, N, m->cfg.n_embd, 1);
  m->base.ops->download(values, m->fw.vals, (size_t)N * sizeof(float));
  return DFPO_OK;
}

static int rdec_value_backward(rdec_model *m, const float *dvalues, dfpo_err *err) {
  int rc = need_value(m, err);
  if (rc || (rc = need_bwd(m, "value_backward", err)))
    return rc;
  const ops_backend *o = m->base.ops;
  int N = m->fB * m->fT, C = m->cfg.n_embd;
  o->upload(m->gw_.dv, dvalues, (size_t)N * sizeof(float));
  o->zero(m->gw_.dh, (size_t)N * C * sizeof(float));
  float *vg = vh_grad(m);
  o->matmul_bwd(m->gw_.dh, vg, vg + C, m->gw_.dv, m->fw.h, vh_param(m), N, C, 1);
  trunk_backward(m);
  return DFPO_OK;
}

/* ------------------------------------------------------------ decoding */

static const float *rdec_decode_begin(rdec_model *m, const int *tokens, const int *kstart, int B,
                                      int T, int max_len, dfpo_err *err) {
  const ops_backend *o = m->base.ops;
  const char *fam = family_name[m->cfg.family];
  m->gn = 0;
  m->base.last_logits = NULL;
  if (missing_ops(m, err))
    return NULL;
  if (B < 1 || T < 1 || max_len < T) {
    dfpo_err_set(err, DFPO_EUSAGE, "%s decode_begin: bad sizes B=%d T=%d max_len=%d", fam, B, T,
                 max_len);
    return NULL;
  }
  for (int b = 0; b < B; b++) {
    int ks = kstart ? kstart[b] : 0;
    if (ks >= 0 && ks < T && max_len - ks > m->cfg.n_ctx) {
      dfpo_err_set(err, DFPO_EUSAGE, "%s decode_begin: row %d needs %d positions (n_ctx %d)", fam,
                   b, max_len - ks, m->cfg.n_ctx);
      return NULL;
    }
  }
  size_t N = (size_t)B * T, KV = (size_t)m->cfg.n_kv_head * m->cfg.head_dim, L = m->cfg.n_layer;
  /* the key/value heads only (n_head / n_kv_head times less than repeated) */
  size_t cache = (size_t)B * max_len * KV;
  size_t nf = layout_ws(m, &m->gw, NULL, B, T, 0) + 2 * L * cache + (size_t)B * m->cfg.vocab_size;
  size_t ni = layout_ids(&m->gw, NULL, B, T);
  int *h = malloc(ni * sizeof(int));
  int *ks = realloc(m->g_kstart, (size_t)B * sizeof(int));
  if (ks)
    m->g_kstart = ks;
  if (!h || !ks) {
    free(h);
    dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    return NULL;
  }
  if (host_ids(m, tokens, kstart, B, T, h, fam, err) || lora_reserve(m, N, err) ||
      grow(o, (void **)&m->gen, &m->gen_floats, nf, sizeof(float), err) ||
      grow(o, (void **)&m->gen_ids, &m->gen_ids_cap, ni, sizeof(int), err)) {
    free(h);
    return NULL;
  }
  float *p = m->gen;
  for (size_t l = 0; l < L; l++) {
    m->kc[l] = p, p += cache;
    m->vc[l] = p, p += cache;
  }
  m->g_logits = p, p += (size_t)B * m->cfg.vocab_size;
  layout_ws(m, &m->gw, p, B, T, 0);
  layout_ids(&m->gw, m->gen_ids, B, T);
  memcpy(m->g_kstart, h + 3 * N, (size_t)B * sizeof(int));
  o->upload(m->gen_ids, h, ni * sizeof(int));
  free(h);
  const rdec_ws *w = &m->gw;
  int C = m->cfg.n_embd;
  embed(m, w->x, w, (int)N);
  run_layers(m, w, B, T, 0, max_len, 1);
  /* the head of each row's last position only */
  for (int b = 0; b < B; b++)
    o->copy(w->t + (size_t)b * C, w->x + ((size_t)b * T + T - 1) * C, (size_t)C * sizeof(float));
  lm_head(m, m->g_logits, w->h, w->st, w->t, B);
  m->gB = B, m->gmax = max_len, m->gn = T;
  m->base.last_logits = m->g_logits;
  return m->g_logits;
}

static const float *rdec_decode_step(rdec_model *m, const int *next, dfpo_err *err) {
  const char *fam = family_name[m->cfg.family];
  if (m->gn == 0) {
    dfpo_err_set(err, DFPO_EUSAGE, "%s decode_step: call decode_begin first", fam);
    return NULL;
  }
  if (m->gn >= m->gmax) {
    dfpo_err_set(err, DFPO_EUSAGE, "%s decode_step: the cache is full (%d positions)", fam,
                 m->gmax);
    return NULL;
  }
  const ops_backend *o = m->base.ops;
  int B = m->gB;
  int *h = malloc((size_t)3 * B * sizeof(int));
  if (!h) {
    dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    return NULL;
  }
  for (int b = 0; b < B; b++) {
    if (next[b] < 0 || next[b] >= m->cfg.vocab_size) {
      dfpo_err_set(err, DFPO_EUSAGE, "%s decode_step: token %d of row %d outside the vocabulary",
                   fam, next[b], b);
      free(h);
      return NULL;
    }
    h[b] = next[b];
    h[B + b] = m->gn - m->g_kstart[b];
    h[2 * B + b] = 0;
  }
  /* one token per row: the workspace's first B rows, its own kstart kept */
  rdec_ws w = m->gw;
  w.pos = w.tok + B;
  w.zeros = w.tok + 2 * B;
  o->upload(w.tok, h, (size_t)3 * B * sizeof(int));
  free(h);
  embed(m, w.x, &w, B);
  run_layers(m, &w, B, 1, m->gn, m->gmax, 1);
  lm_head(m, m->g_logits, w.h, w.st, w.x, B);
  m->gn++;
  m->base.last_logits = m->g_logits;
  return m->g_logits;
}

/* Beam search's reorder: row i of the cache (its keys and values, its left
 * padding) becomes old row src_rows[i]'s; the last logits are spent. */
static int rdec_decode_reorder(rdec_model *m, const int *src_rows, dfpo_err *err) {
  const char *fam = family_name[m->cfg.family];
  if (m->gn == 0)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s decode_reorder: call decode_begin first", fam);
  int B = m->gB, identity;
  char who[64];
  snprintf(who, sizeof who, "%s decode_reorder", fam);
  int rc = model_reorder_check(src_rows, B, who, &identity, err);
  if (rc)
    return rc;
  m->base.last_logits = NULL; /* the logits' rows no longer match the cache's */
  if (identity)
    return DFPO_OK;
  const ops_backend *o = m->base.ops;
  size_t KV = (size_t)m->cfg.n_kv_head * m->cfg.head_dim, row = (size_t)m->gmax * KV;
  if ((rc = grow(o, (void **)&m->g_spare, &m->g_spare_floats, (size_t)B * row, sizeof(float), err)))
    return rc;
  /* per cache tensor: the filled positions of each source row into the
   * scratch, then the block back in one copy */
  size_t used = (size_t)m->gn * KV * sizeof(float);
  for (int l = 0; l < m->cfg.n_layer; l++)
    for (int kv = 0; kv < 2; kv++)
      model_rows_reorder(o, kv ? m->vc[l] : m->kc[l], m->g_spare, src_rows, B, row, used);
  model_ints_reorder(o, m->gw.kstart, m->g_kstart, src_rows, B); /* each row's padding */
  return DFPO_OK;
}

/* ------------------------------------------------------------ checkpoints */

/* The native checkpoint (RDEC_NATIVE_MAGIC): a 128-byte header (the
 * magic, version 1, the header's size, the rdec_config's fields, the head,
 * the step, flags bit 0 = the AdamW moments follow, the parameter count),
 * then the parameters, then, with bit 0, the first and second moments, all
 * little-endian float32 in the model's tensor order. Version 2 (flag bit
 * 1): a model with LoRA adapters, the base's parameters without moments,
 * then the adapter section (trainer/ckpt_internal.h's ckpt_lora_section,
 * targets bit k the family's target k). */
#define RDEC_NATIVE_VERSION 1u
#define RDEC_NATIVE_VERSION_LORA 2u
#define RDEC_NATIVE_HEADER 128u

typedef struct rdec_native_header {
  char magic[8];
  uint32_t version, header_bytes;
  int32_t family, vocab_size, n_embd, n_layer, n_head, n_kv_head, head_dim, d_ff, n_ctx, rot;
  int32_t interleaved, rmsnorm, parallel, shared_ln, act, bias, mlp_bias, head_bias, tied;
  float rope_base, eps;
  int32_t head, step;
  uint32_t flags;
  uint64_t nparams;
  char reserved[8];
} rdec_native_header;
_Static_assert(sizeof(rdec_native_header) == RDEC_NATIVE_HEADER, "header is 128 bytes");

/* The parameter block as the checkpoint code walks it (ckpt_base): in the
 * file's fp32 layout (the tensors in order), a model with 16-bit weights
 * writing them widened (exact), so its file is the fp32 model of its values
 * (model_load_as puts them back into the same bits). */
static void base_tensor(const model_t *mm, int i, const char **name, size_t *n, size_t *off,
                        int *w16) {
  const rdec_tensor *t = &rdec_of_const(mm)->tensors[i];
  *name = t->name, *n = (size_t)t->rows * t->cols, *off = t->off, *w16 = t->w16;
}
static ckpt_base base_of(const rdec_model *m) {
  return (ckpt_base){m->params, m->params16, m->nparams, m->wdtype, m->ntensors, base_tensor};
}

static int rdec_save(rdec_model *m, const char *path, int with_optimizer, dfpo_err *err) {
  const rdec_config *c = &m->cfg;
  rdec_native_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, RDEC_NATIVE_MAGIC, 8);
  const rdec_lora *z = &m->lora;
  h.version = z->r ? RDEC_NATIVE_VERSION_LORA : RDEC_NATIVE_VERSION;
  h.header_bytes = RDEC_NATIVE_HEADER;
  h.family = c->family, h.vocab_size = c->vocab_size, h.n_embd = c->n_embd;
  h.n_layer = c->n_layer, h.n_head = c->n_head, h.n_kv_head = c->n_kv_head;
  h.head_dim = c->head_dim, h.d_ff = c->d_ff, h.n_ctx = c->n_ctx, h.rot = c->rot;
  h.interleaved = c->interleaved, h.rmsnorm = c->rmsnorm, h.parallel = c->parallel;
  h.shared_ln = c->shared_ln, h.act = c->act, h.bias = c->bias, h.mlp_bias = c->mlp_bias;
  h.head_bias = c->head_bias, h.tied = c->tied, h.rope_base = c->rope_base, h.eps = c->eps;
  h.head = m->base.cfg.head;
  h.step = m->base.step;
  with_optimizer = with_optimizer && (z->r ? z->train_block : m->train_block);
  h.flags = (with_optimizer ? 1u : 0u) | (z->r ? 2u : 0u);
  h.nparams = m->nparams;
  dfpo_atomic a;
  int rc = dfpo_atomic_open(&a, path, err);
  if (rc)
    return rc;
  ckpt_lora_section ls;
  memset(&ls, 0, sizeof ls);
  memcpy(ls.magic, CKPT_LORA_MAGIC, 8);
  ls.rank = z->r;
  ls.alpha = z->alpha;
  ls.targets = z->targets;
  ls.nparams = z->nparams;
  ckpt_base b = base_of(m);
  if (fwrite(&h, sizeof h, 1, a.fp) != 1 || ckpt_write_base(a.fp, &m->base, &b) ||
      (with_optimizer && !z->r &&
       (ckpt_write_floats(a.fp, &m->base, m->m1, m->nparams) ||
        ckpt_write_floats(a.fp, &m->base, m->m2, m->nparams))) ||
      (z->r && (fwrite(&ls, sizeof ls, 1, a.fp) != 1 ||
                ckpt_write_floats(a.fp, &m->base, z->params, z->nparams) ||
                (with_optimizer && (ckpt_write_floats(a.fp, &m->base, z->m1, z->nparams) ||
                                    ckpt_write_floats(a.fp, &m->base, z->m2, z->nparams)))))) {
    int e = errno;
    dfpo_atomic_abort(&a);
    return dfpo_err_errno(err, DFPO_ERUNTIME, e, "%s: write failed", path);
  }
  return dfpo_atomic_commit(&a, err);
}

/* The parameter count of a model of config c and head, laid out without
 * allocating the parameters. */
static int count_params(const rdec_config *c, int head, size_t *n, dfpo_err *err) {
  rdec_model m;
  memset(&m, 0, sizeof m);
  m.cfg = *c;
  m.base.cfg.head = head;
  m.tensors = calloc((size_t)c->n_layer * L_N + 10, sizeof *m.tensors);
  m.layer = calloc((size_t)c->n_layer, sizeof *m.layer);
  if (m.tensors && m.layer)
    build_layout(&m);
  free(m.tensors);
  free(m.layer);
  if (!m.ntensors)
    return dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
  *n = m.nparams;
  return DFPO_OK;
}

/* The adapter section of a version-2 file after the base's parameters:
 * adds the adapters its header describes to m (in place: m's own, which
 * must be the same rank, alpha and targets) and reads them (with with_opt
 * their AdamW moments); the file must end there. */
static int load_lora_section(FILE *fp, rdec_model *m, const char *path, int with_opt, int in_place,
                             dfpo_err *err) {
  ckpt_lora_section ls;
  int ntab;
  lora_table(m->cfg.family, &ntab);
  if (fread(&ls, sizeof ls, 1, fp) != 1)
    return dfpo_err_set(err, DFPO_EDATA, "%s: LoRA adapter section truncated (no header)", path);
  if (memcmp(ls.magic, CKPT_LORA_MAGIC, 8) != 0 || ls.targets == 0 || ls.targets >= (1u << ntab) ||
      ls.reserved)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: LoRA adapter section damaged (magic, target bits %#x)", path,
                        ls.targets);
  const rdec_lora_target *tab = lora_table(m->cfg.family, &ntab);
  const char *names[RDEC_LORA_MAX];
  for (int k = 0; k < ntab; k++)
    names[k] = tab[k].name;
  char targets[256];
  model_lora_target_list(ls.targets, names, ntab, targets, sizeof targets);
  model_lora_config c = {ls.rank, ls.alpha, targets};
  dfpo_err why;
  dfpo_err_clear(&why);
  rdec_lora *z = &m->lora;
  int rc;
  if (in_place && (rc = ckpt_lora_fits(&ls, z->r, z->alpha, z->targets, targets, path, err)))
    return rc;
  if (!in_place && rdec_add_lora(m, &c, 0, &why))
    return dfpo_err_set(err, DFPO_EDATA, "%s: LoRA adapter section: %s", path, why.msg);
  if (ls.nparams != z->nparams)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: LoRA adapter section damaged: it says %llu parameters, rank %d on "
                        "%s has %zu",
                        path, (unsigned long long)ls.nparams, ls.rank, targets, z->nparams);
  rc = ckpt_read_floats(fp, &m->base, z->params, z->nparams, path, "LoRA adapters", err);
  /* a view does not train: its file's moments are passed over */
  if (!rc && with_opt && m->params_borrowed)
    rc = ckpt_skip_floats(fp, 2 * (uint64_t)z->nparams, path, "adapters' AdamW moments", err);
  else if (!rc && with_opt && !(rc = rdec_ensure_train(m, err)) &&
           !(rc = ckpt_read_floats(fp, &m->base, z->m1, z->nparams, path,
                                   "adapters' first AdamW moment", err)))
    rc = ckpt_read_floats(fp, &m->base, z->m2, z->nparams, path, "adapters' second AdamW moment",
                          err);
  if (!rc && fgetc(fp) != EOF)
    rc = dfpo_err_set(err, DFPO_EDATA, "%s: trailing data after the LoRA adapter section", path);
  return rc;
}

int rdec_load_native(model_t **out, const char *path, FILE *fp, const ckpt_dest *to,
                     dfpo_err *err) {
  *out = NULL;
  rdec_native_header h;
  if (fread(&h, sizeof h, 1, fp) != 1)
    return dfpo_err_set(err, DFPO_EDATA, "%s: truncated header (%u bytes expected)", path,
                        RDEC_NATIVE_HEADER);
  if (memcmp(h.magic, RDEC_NATIVE_MAGIC, 8) != 0)
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a rotary decoder checkpoint (bad magic)", path);
  if (h.version != RDEC_NATIVE_VERSION && h.version != RDEC_NATIVE_VERSION_LORA)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: checkpoint version %u, this build reads versions %u and %u", path,
                        h.version, RDEC_NATIVE_VERSION, RDEC_NATIVE_VERSION_LORA);
  int lora = h.version == RDEC_NATIVE_VERSION_LORA;
  if (h.header_bytes != RDEC_NATIVE_HEADER || (h.flags & ~3u) || !!(h.flags & 2u) != lora ||
      h.step < 0 || (h.head != MODEL_HEAD_NONE && h.head != MODEL_HEAD_VALUE))
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: corrupt header (size %u, flags %#x, step %d, head %d)", path,
                        h.header_bytes, h.flags, h.step, h.head);
  rdec_config c = {.family = h.family,
                   .vocab_size = h.vocab_size,
                   .n_embd = h.n_embd,
                   .n_layer = h.n_layer,
                   .n_head = h.n_head,
                   .n_kv_head = h.n_kv_head,
                   .head_dim = h.head_dim,
                   .d_ff = h.d_ff,
                   .n_ctx = h.n_ctx,
                   .rot = h.rot,
                   .interleaved = h.interleaved,
                   .rope_base = h.rope_base,
                   .eps = h.eps,
                   .rmsnorm = h.rmsnorm,
                   .parallel = h.parallel,
                   .shared_ln = h.shared_ln,
                   .act = h.act,
                   .bias = h.bias,
                   .mlp_bias = h.mlp_bias,
                   .head_bias = h.head_bias,
                   .tied = h.tied};
  int rc = check_sizes(&c, path, err);
  if (rc)
    return rc;
  if (!family_fits(&c))
    return dfpo_err_set(err, DFPO_EDATA, "%s: header config: switches no rotary family has", path);
  /* the sizes must agree before the parameters are allocated */
  size_t want = 0;
  if ((rc = count_params(&c, h.head, &want, err)))
    return rc;
  if (h.nparams != want)
    return dfpo_err_set(err, DFPO_EDATA,
                        "%s: header says %llu parameters, its config has %zu: config and tensors "
                        "do not match",
                        path, (unsigned long long)h.nparams, want);
  struct stat st;
  uint64_t expect =
      RDEC_NATIVE_HEADER + h.nparams * sizeof(float) * ((h.flags & 1) && !lora ? 3 : 1);
  /* with adapters: at least the base and the section's header; the
   * section's end is checked after it */
  if (fstat(fileno(fp), &st) == 0 &&
      (lora ? (uint64_t)st.st_size < expect + sizeof(ckpt_lora_section)
            : (uint64_t)st.st_size != expect))
    return dfpo_err_set(err, DFPO_EDATA, "%s: %lld bytes, expected %llu", path,
                        (long long)st.st_size, (unsigned long long)expect);
  rdec_model *m;
  if ((rc = ckpt_into_arch(to, &rdec_vtable, "a rotary decoder checkpoint", path, err)))
    return rc;
  if (to->into) {
    m = rdec_of(to->into);
    if ((rc = ckpt_into_fits(to, !memcmp(&c, &m->cfg, sizeof c) && h.head == to->into->cfg.head,
                             m->params_borrowed, lora, m->lora.r, path, err)))
      return rc;
  } else if ((rc = rdec_create(&m, &c, h.head, NULL, NULL, to->wd, err))) {
    return dfpo_err_prefix(err, "%s", path);
  }
  ckpt_base b = base_of(m);
  ops_dtype wd = m->wdtype;
  rc = ckpt_read_base(fp, &m->base, &b, to->adapters_only, h.nparams, path, err);
  if (!rc && lora)
    rc = load_lora_section(fp, m, path, h.flags & 1, to->into != NULL, err);
  else if (!rc && (h.flags & 1) && wd == OPS_DTYPE_F32 && !(rc = rdec_ensure_train(m, err)) &&
           !(rc = ckpt_read_floats(fp, &m->base, m->m1, m->nparams, path, "first AdamW moment",
                                   err)))
    rc = ckpt_read_floats(fp, &m->base, m->m2, m->nparams, path, "second AdamW moment", err);
  if (rc) {
    if (!to->into)
      rdec_destroy(m);
    return rc;
  }
  m->base.step = h.step;
  *out = &m->base;
  return DFPO_OK;
}

/* ------------------------------------------------------------ export */

/* The inverse of neox_reorder: q | k | v rows of src back to GPT-NeoX's
 * per-head [q, k, v] in dst. */
static void neox_unorder(float *dst, const float *src, int NH, int HS, int cols) {
  size_t rb = (size_t)cols * sizeof(float);
  for (int h = 0; h < NH; h++)
    for (int s = 0; s < 3; s++)
      for (int d = 0; d < HS; d++)
        memcpy(dst + ((size_t)h * 3 * HS + (size_t)s * HS + d) * cols,
               src + ((size_t)s * NH * HS + (size_t)h * HS + d) * cols, rb);
}

/* The module target k of layer l is in peft's names: the layer's prefix
 * (its fused weight's name to the third dot) and the target's name. */
static void peft_module(const void *ctx, int l, int k, char *buf, size_t len) {
  const rdec_model *m = ctx;
  int ntab;
  const rdec_lora_target *g = &lora_table(m->cfg.family, &ntab)[k];
  const char *wname = m->tensors[m->layer[l][slot_tensor[g->slot]]].name;
  int plen = 0;
  for (int dots = 0, q = 0; wname[q] && dots < 3; q++)
    if (wname[q] == '.' && ++dots == 3)
      plen = q + 1;
  snprintf(buf, len, "%.*s%s", plen, wname, g->name);
}

/* model_load_peft_adapters: peft's folder (rdec_export's adapter files:
 * base_model.model.<module>.lora_A.weight [r, in], .lora_B.weight [out,
 * r], GPT-NeoX's query_key_value rows in their per-head order) added to m. */
static int import_adapters(rdec_model *m, const char *dir, dfpo_err *err) {
  const rdec_config *c = &m->cfg;
  const rdec_lora *z = &m->lora;
  int ntab;
  const rdec_lora_target *tab = lora_table(c->family, &ntab);
  const char *names[RDEC_LORA_MAX];
  for (int k = 0; k < ntab; k++)
    names[k] = tab[k].name;
  ckpt_peft p;
  float *host;
  /* a row of GPT-NeoX's fused B as scratch after the block */
  size_t fused = (size_t)3 * c->n_head * c->head_dim;
  int rc = ckpt_peft_start(&p, &m->base, dir, names, ntab, c->n_layer, peft_module, m, fused, &host,
                           err);
  if (rc)
    return rc;
  for (int l = 0; l < c->n_layer && !rc; l++)
    for (int s = 0; s < RS_N && !rc; s++)
      for (int t = 0; t < z->nt[s] && z->first[l][s] >= 0 && !rc; t++) {
        const rdec_tensor *a = &z->tensors[z->first[l][s] + t],
                          *b = &z->tensors[z->first[l][s] + z->nt[s] + t];
        char na[192], nb[192];
        snprintf(na, sizeof na, "base_model.model.%s", a->name);
        snprintf(nb, sizeof nb, "base_model.model.%s", b->name);
        float *bh = host + b->off;
        /* A [r, in] as stored; B [out, r] into the stored Bt [r, out] */
        if ((rc = ckpt_peft_read(&p, na, a->rows, a->cols, 0, host + a->off, err)) ||
            (rc = ckpt_peft_read(&p, nb, b->rows, b->cols, 1, bh, err)))
          break;
        /* GPT-NeoX's per-head rows into the fused q | k | v, row by row of Bt */
        for (int q = 0; c->family == RDEC_NEOX && s == RS_QKV && q < b->rows; q++) {
          float *row = bh + (size_t)q * b->cols, *spare = host + z->nparams;
          memcpy(spare, row, fused * sizeof(float));
          neox_reorder(row, spare, c->n_head, c->head_dim, 1);
        }
      }
  return ckpt_peft_finish(&p, &m->base, host, rc, err);
}

/* The adapter of layer l's slot s on the rows of part p: the index of its
 * A in the adapters' tensors (its Bt at + nt), -1 when not adapted. */
static int adapter_of(const rdec_model *m, int l, int s, int p) {
  const rdec_lora *z = &m->lora;
  if (!z->r || z->first[l][s] < 0)
    return -1;
  for (int t = 0; t < z->nt[s]; t++)
    if (z->tab[z->tk[s][t]].part == p)
      return z->first[l][s] + t;
  return -1;
}

/* A copy of n floats at dev (backend memory), GPT-NeoX's fused rows put
 * back in its per-head order (rows of cols floats; each of `reps` blocks
 * of n / reps floats alone), in a new allocation of the backend
 * (*tmp; NULL on failure). */
static float *neox_copy(const rdec_model *m, const float *dev, int cols, int reps, float **tmp) {
  const ops_backend *o = m->base.ops;
  const rdec_config *c = &m->cfg;
  size_t each = (size_t)(c->n_head * c->head_dim * 3) * cols, n = each * reps;
  float *h = malloc(2 * n * sizeof(float));
  *tmp = h ? o->alloc(n * sizeof(float)) : NULL;
  if (*tmp) {
    o->download(h, dev, n * sizeof(float));
    for (int r = 0; r < reps; r++)
      neox_unorder(h + n + r * each, h + r * each, c->n_head, c->head_dim, cols);
    o->upload(*tmp, h + n, n * sizeof(float));
  }
  free(h);
  return *tmp;
}

/* A 16-bit tensor widened into new backend memory (*tmp, the caller's to
 * free; NULL when out of memory). */
static float *widened_copy(const rdec_model *m, const rdec_tensor *t, float **tmp) {
  const ops_backend *o = m->base.ops;
  size_t n = (size_t)t->rows * t->cols;
  uint16_t *h16 = malloc(n * sizeof(uint16_t));
  float *h = malloc(n * sizeof(float));
  *tmp = h16 && h ? o->alloc(n * sizeof(float)) : NULL;
  if (*tmp) {
    o->download(h16, m->params16 + t->off, n * sizeof(uint16_t));
    ops_w16_to_f32(h, h16, n, (int)m->wdtype);
    o->upload(*tmp, h, n * sizeof(float));
  }
  free(h16);
  free(h);
  return *tmp;
}

/* config.json as transformers' config class of the family reads it (the
 * fields read_config reads). */
static cJSON *hf_config(const rdec_model *m, const model_export_opts *x) {
  const rdec_config *c = &m->cfg;
  static const char *const archs[] = {"GPTJForCausalLM", "GPTNeoXForCausalLM", "LlamaForCausalLM"};
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "architectures"),
                       cJSON_CreateString(archs[c->family]));
  cJSON_AddStringToObject(o, "model_type", family_name[c->family]);
  cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
  const char *gelu = c->act == RDEC_ACT_GELU_ERF ? "gelu" : "gelu_new";
  if (c->family == RDEC_GPTJ) {
    cJSON_AddNumberToObject(o, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(o, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(o, "n_head", c->n_head);
    cJSON_AddNumberToObject(o, "n_inner", c->d_ff);
    cJSON_AddNumberToObject(o, "n_positions", c->n_ctx);
    cJSON_AddNumberToObject(o, "rotary_dim", c->rot);
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", c->eps);
    cJSON_AddStringToObject(o, "activation_function", gelu);
  } else {
    cJSON_AddNumberToObject(o, "hidden_size", c->n_embd);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(o, "intermediate_size", c->d_ff);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->n_ctx);
  }
  if (c->family == RDEC_NEOX) {
    /* int(head_size * rotary_pct) must give rot back */
    double pct = (double)c->rot / c->head_dim;
    if ((int)(c->head_dim * pct) != c->rot)
      pct = (c->rot + 0.5) / c->head_dim;
    cJSON_AddNumberToObject(o, "rotary_pct", pct);
    cJSON_AddNumberToObject(o, "rotary_emb_base", c->rope_base);
    cJSON_AddNumberToObject(o, "layer_norm_eps", c->eps);
    cJSON_AddBoolToObject(o, "use_parallel_residual", c->parallel);
    cJSON_AddStringToObject(o, "hidden_act", gelu);
    cJSON_AddBoolToObject(o, "attention_bias", 1);
  } else if (c->family == RDEC_LLAMA) {
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_head);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_base);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->eps);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "attention_bias", 0);
    cJSON_AddBoolToObject(o, "mlp_bias", 0);
  }
  cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied);
  model_hf_config_tail(o, x);
  return o;
}

/* peft's adapter_config.json beside path. */
static int write_adapter_config(const rdec_model *m, const char *path, dfpo_err *err) {
  const rdec_lora *z = &m->lora;
  const char *names[64];
  int nt = 0;
  for (int k = 0; k < z->ntab && nt < 64; k++)
    if ((z->targets >> k) & 1)
      names[nt++] = z->tab[k].name;
  return ckpt_write_peft_config(path, z->r, z->alpha, names, nt, 0, err);
}

/* model_export_safetensors: the Hugging Face tensors (q_proj, k_proj,
 * v_proj and gate_proj, up_proj apart again, GPT-NeoX's query_key_value in
 * its per-head order), adapters merged (W + (alpha/r) B A, on each
 * adapted layer's rows), a value head as trl's v_head.summary.* unless
 * lm_only, and config.json with write_config; or, with o->adapters, the
 * adapters alone as peft's adapter_model.safetensors (base_model.model.
 * <Hugging Face module>.lora_A.weight [r, in], .lora_B.weight [out, r]; the
 * value head's copy is no part of it) and adapter_config.json. GPT-NeoX's
 * fused rows pass through a copy in the backend's memory, one per layer
 * (with its adapter's B). */
static int rdec_export(const rdec_model *m, const char *path, const model_export_opts *o,
                       dfpo_err *err) {
  const rdec_lora *z = &m->lora;
  const rdec_config *c = &m->cfg;
  if (o->adapters && !z->r)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: the model has no LoRA adapters", path);
  int cap = 3 * m->ntensors + 2 * z->ntensors + 2, n = 0, ntmp = 0, rc = DFPO_OK;
  ckpt_st_tensor *ts = calloc((size_t)cap, sizeof *ts);
  char(*names)[160] = calloc((size_t)cap, sizeof *names);
  float **tmp = calloc((size_t)cap, sizeof *tmp);
  cJSON *meta = cJSON_CreateObject();
  if (!ts || !names || !tmp || !meta) {
    rc = dfpo_err_set(err, DFPO_ERUNTIME, "out of memory");
    goto done;
  }
  cJSON_AddStringToObject(meta, "format", "pt");
  for (int l = 0; l < c->n_layer && o->adapters; l++)
    for (int s = 0; s < RS_N; s++)
      for (int t = 0; t < z->nt[s] && z->first[l][s] >= 0; t++) {
        const rdec_tensor *a = &z->tensors[z->first[l][s] + t],
                          *b = &z->tensors[z->first[l][s] + z->nt[s] + t];
        snprintf(names[n], sizeof names[n], "base_model.model.%s", a->name);
        ts[n] = (ckpt_st_tensor){.name = names[n],
                                 .dev = z->params + a->off,
                                 .rows = a->rows,
                                 .cols = a->cols,
                                 .ndim = 2};
        n++;
        const float *bd = z->params + b->off;
        if (c->family == RDEC_NEOX && s == RS_QKV &&
            !(bd = neox_copy(m, bd, 1, z->r, &tmp[ntmp++])))
          goto oom;
        snprintf(names[n], sizeof names[n], "base_model.model.%s", b->name);
        /* Bt [r, out] written [out, r] */
        ts[n] = (ckpt_st_tensor){.name = names[n],
                                 .dev = bd,
                                 .rows = b->rows,
                                 .cols = b->cols,
                                 .ndim = 2,
                                 .transpose = 1};
        n++;
      }
  for (int k = 0; k < m->ntensors && !o->adapters; k++) {
    const rdec_tensor *t = &m->tensors[k];
    if (m->vhead >= 0 && (k == m->vhead || k == m->vhead + 1)) {
      if (o->lm_only)
        continue;
      ts[n] = (ckpt_st_tensor){.name = t->name,
                               .dev = vh_param(m) + (k == m->vhead ? 0 : c->n_embd),
                               .rows = t->rows,
                               .cols = t->cols,
                               .ndim = k == m->vhead ? 2 : 1};
      n++;
      continue;
    }
    int layer = -1, slot = -1;
    for (int l = 0; l < c->n_layer && slot < 0; l++)
      for (int s = 0; s < RS_N; s++)
        if (m->layer[l][slot_tensor[s]] == k)
          layer = l, slot = s;
    for (int q = 0; q < t->nsrc; q++) {
      int part = t->nsrc == 3   ? RP_Q + q
                 : t->nsrc == 2 ? RP_GATE + q
                                : RP_ALL,
          row0 = 0, rows = t->rows;
      if (t->nsrc > 1)
        part_rows(c, slot, part, &row0, &rows);
      /* a 16-bit matrix is written widened: from its 16 bits, or (GPT-NeoX's
       * qkv, reordered on the device) from a widened copy */
      const float *base = m->params + t->off;
      if (t->w16 && t->neox_qkv && !(base = widened_copy(m, t, &tmp[ntmp++])))
        goto oom;
      const float *dev = base + (size_t)row0 * t->cols;
      if (t->neox_qkv && !(dev = neox_copy(m, dev, t->vec ? 1 : t->cols, 1, &tmp[ntmp++])))
        goto oom;
      int half = t->w16 && !t->neox_qkv;
      ts[n] = (ckpt_st_tensor){.name = t->src[q],
                               .dev = half ? NULL : dev,
                               .dev16 = half ? m->params16 + t->off + (size_t)row0 * t->cols : NULL,
                               .dtype = (int)m->wdtype,
                               .rows = rows,
                               .cols = t->cols,
                               .ndim = t->vec ? 1 : 2};
      int a = slot >= 0 && !t->vec ? adapter_of(m, layer, slot, part) : -1;
      if (a >= 0) { /* W + (alpha/r) B A on these rows */
        const float *bd = z->params + z->tensors[a + z->nt[slot]].off;
        if (t->neox_qkv && !(bd = neox_copy(m, bd, 1, z->r, &tmp[ntmp++])))
          goto oom;
        ts[n].lo_a = z->params + z->tensors[a].off;
        ts[n].lo_b = bd;
        ts[n].lo_r = z->r;
        ts[n].lo_scale = z->alpha / (float)z->r;
      }
      n++;
    }
  }
  rc = ckpt_write_safetensors(&m->base, path, meta, ts, n, err);
  meta = NULL; /* consumed */
  if (!rc && o->adapters)
    rc = write_adapter_config(m, path, err);
  else if (!rc && o->write_config) {
    char cpath[4096];
    cJSON *cj = NULL;
    if (!(rc = model_config_beside(path, cpath, sizeof cpath, err))) {
      cj = hf_config(m, o);
      rc = ckpt_write_json(cpath, cj, err);
    }
    cJSON_Delete(cj);
  }
  goto done;
oom:
  rc = dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory for the export", path);
done:
  for (int i = 0; tmp && i < ntmp; i++)
    if (tmp[i])
      m->base.ops->free(tmp[i]);
  free(tmp);
  free(ts);
  free(names);
  cJSON_Delete(meta);
  return rc;
}

/* ------------------------------------------------------ 16-bit weights */

/* The tensors kept in 16 bits: each layer's qkv, attention output and MLP
 * matrices, the embedding and the untied LM head; the norms, biases and
 * the value head stay fp32. */
static int w16_tensor(const rdec_model *m, int i) {
  if (i == m->wte || i == m->headw)
    return 1;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    const int *L = m->layer[l];
    if (i == L[L_QKVW] || i == L[L_OW] || i == L[L_FCW] || i == L[L_OUTW])
      return 1;
  }
  return 0;
}

/* The last forward pass, its logits and a decoding's cache are spent. */
static void rdec_forget(rdec_model *m) {
  m->have_lm = 0;
  m->fB = 0;
  m->gn = 0;
  m->base.last_logits = NULL;
}

/* Moves the weights into the precision d (model_repack_weights). */
static int rdec_set_weight_dtype(rdec_model *m, ops_dtype d, dfpo_err *err) {
  const char *fam = family_name[m->cfg.family];
  int nt = m->ntensors, changed = 0;
  model_w16_tensor *t = malloc((size_t)nt * sizeof *t);
  if (!t)
    return dfpo_err_set(err, DFPO_ERUNTIME, "%s: out of memory", fam);
  for (int i = 0; i < nt; i++)
    t[i] = (model_w16_tensor){(size_t)m->tensors[i].rows * m->tensors[i].cols, m->tensors[i].off,
                              m->tensors[i].w16, w16_tensor(m, i)};
  model_w16_store st = {&m->params, &m->params16, &m->nparams32, &m->n16, &m->wdtype};
  int rc = model_repack_weights(&m->base, fam, m->params_borrowed, m->nviews,
                                m->train_block != NULL, d, t, nt, &st, &changed, err);
  for (int i = 0; changed && i < nt; i++)
    m->tensors[i].off = t[i].off, m->tensors[i].w16 = t[i].w16;
  free(t);
  if (changed) /* the last logits and a decoding's cache came from the old weights */
    rdec_forget(m);
  return changed ? DFPO_OK : rc;
}

/* ------------------------------------------------------------ table */

static int usage(const model_t *m, dfpo_err *err, const char *what) {
  return dfpo_err_set(err, DFPO_EUSAGE, "%s: %s is not written yet for the rotary decoders",
                      m->cfg.arch, what);
}

static void vt_free(model_t *m) {
  rdec_destroy(rdec_of(m));
}
/* Hugging Face's _init_weights with initializer_range 0.02: matrices and
 * the embedding normal(0, 0.02), biases 0, norm weights 1. */
/* model_add_value_head: v_head.summary's weight [1, C] and bias appended
 * to the tensors and to the fp32 block (grown: a 16-bit model's fp32
 * block is small), the weight the normals vt_init_random would give it in
 * a value model of this config (drawn after every matrix, 0.02), the bias
 * 0. */
static int vt_add_value_head(model_t *mm, uint64_t seed, dfpo_err *err) {
  rdec_model *m = rdec_of(mm);
  if (m->params_borrowed || m->nviews || m->train_block)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: a value head goes on a model of its own without training state or "
                        "views",
                        mm->cfg.arch);
  int C = m->cfg.n_embd, rc;
  uint64_t drawn = 0; /* vt_init_random's normals before the head's */
  for (int k = 0; k < m->ntensors; k++)
    if (!m->tensors[k].vec)
      drawn += (size_t)m->tensors[k].rows * m->tensors[k].cols;
  if ((rc = model_grow_value_head(mm, &m->params, m->nparams32, C, seed, drawn, 0, err)))
    return rc;
  /* the two tensors at the fp32 block's end */
  size_t off = m->nparams32;
  m->vhead = add_tensor(m, 0, 1, C, "v_head.summary.weight");
  add_tensor(m, 1, 1, 1, "v_head.summary.bias");
  m->tensors[m->vhead].off = off;
  m->tensors[m->vhead + 1].off = off + (size_t)C;
  m->nparams32 = off + (size_t)C + 1;
  m->base.cfg.head = MODEL_HEAD_VALUE;
  return DFPO_OK;
}

static void vt_init_random(model_t *mm, uint64_t seed) {
  rdec_model *m = rdec_of(mm);
  if (m->params_borrowed || m->wdtype != OPS_DTYPE_F32)
    return; /* a view's parameters are another model's; 16-bit weights are frozen */
  dfpo_rng r;
  dfpo_rng_init(&r, seed, DFPO_STREAM_INIT);
  float *h = malloc(m->nparams * sizeof(float));
  if (!h)
    return;
  uint64_t drawn = 0; /* normals drawn so far */
  for (int k = 0; k < m->ntensors; k++) {
    const rdec_tensor *t = &m->tensors[k];
    size_t n = (size_t)t->rows * t->cols, L = strlen(t->name);
    int normw = t->vec && L > 7 && !strcmp(t->name + L - 7, ".weight");
    if (!t->vec) {
      model_fill_normal(h + t->off, n, &r, drawn, 0.02, 0);
      drawn += n;
    } else {
      for (size_t i = 0; i < n; i++)
        h[t->off + i] = normw ? 1.0f : 0.0f;
    }
  }
  m->base.ops->upload(m->params, h, m->nparams * sizeof(float));
  free(h);
}
static size_t vt_arena_bytes(const model_t *mm) {
  const rdec_model *m = rdec_of_const(mm);
  const rdec_lora *z = &m->lora;
  /* a view's base weights are another model's */
  return ((m->params_borrowed ? 0 : m->nparams32) * (m->train_block ? 4 : 1) +
          z->nparams * (z->train_block ? 4 : 1) + z->scratch_floats + m->act_floats +
          m->gen_floats + m->bwd_floats + (size_t)m->cfg.n_embd) *
             sizeof(float) +
         (m->ids_cap + m->gen_ids_cap) * sizeof(int) + m->n16 * sizeof(uint16_t) +
         m->g_spare_floats * sizeof(float);
}
/* The same decoder with another head (MODEL_HEAD_VALUE: a value model on
 * the final norm's output), parameters zeroed. */
static int vt_new_like(model_t **out, const model_t *src, int head, int n_classes, dfpo_err *err) {
  (void)n_classes;
  *out = NULL;
  if (head != MODEL_HEAD_NONE && head != MODEL_HEAD_VALUE)
    return usage(src, err, "a classification head");
  rdec_model *m;
  int rc = rdec_create(&m, &rdec_of_const(src)->cfg, head, NULL, NULL, OPS_DTYPE_F32, err);
  if (!rc)
    *out = &m->base;
  return rc;
}
/* Whether a's and b's base parameters hold the same values (through the
 * host in slices): DFPO_EUSAGE when not. */
static int same_base(const rdec_model *a, const rdec_model *b, dfpo_err *err) {
  return model_same_base(&a->base, a->params, a->params16, &b->base, b->params, b->params16,
                         a->nparams32, a->n16, err);
}
static int vt_copy_params(model_t *dst, const model_t *src, dfpo_err *err) {
  rdec_model *d = rdec_of(dst);
  const rdec_model *s = rdec_of_const(src);
  if (dst->vt != src->vt || memcmp(&d->cfg, &s->cfg, sizeof d->cfg) ||
      dst->cfg.head != src->cfg.head)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: copy_params between different configs or heads",
                        dst->cfg.arch);
  if (d->params_borrowed && !d->lora.r)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: a base view's parameters are another model's",
                        dst->cfg.arch);
  if (d->wdtype != s->wdtype)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: copy_params: the models keep their weights in different precisions "
                        "(%s into %s): copy into an fp32 model, then model_set_weight_dtype",
                        dst->cfg.arch, ops_dtype_name(s->wdtype), ops_dtype_name(d->wdtype));
  /* adapters are parameters too: both have the same ones, or neither */
  const rdec_lora *zd = &d->lora, *zs = &s->lora;
  if (zd->r != zs->r || zd->alpha != zs->alpha || zd->targets != zs->targets)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: copy_params: the models' LoRA adapters differ (rank %d and %d)",
                        dst->cfg.arch, zd->r, zs->r);
  int rc;
  if (d->params_borrowed) /* an adapter view: the base is shared, not copied */
    rc = d->params == s->params ? DFPO_OK : same_base(d, s, err);
  else
    rc = model_copy_floats(dst, d->params, src, s->params, d->nparams32, err);
  if (!rc && s->n16 && !d->params_borrowed) /* the same layout: same config, precision */
    rc = model_copy_bytes(dst, d->params16, src, s->params16, s->n16 * sizeof(uint16_t), err);
  if (!rc && zs->r)
    rc = model_copy_floats(dst, zd->params, src, zs->params, zs->nparams, err);
  return rc;
}
/* Every base tensor of dst whose name and shape one of src's has (the
 * base's, adapters or not: a value model's trunk from a LoRA policy). */
static int vt_copy_shared_params(model_t *dst, const model_t *src, int *copied, dfpo_err *err) {
  rdec_model *d = rdec_of(dst);
  const rdec_model *s = rdec_of_const(src);
  int n = 0, rc = DFPO_OK;
  if (d->params_borrowed)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: a view's parameters are another model's",
                        dst->cfg.arch);
  if (d->wdtype != OPS_DTYPE_F32 || s->wdtype != OPS_DTYPE_F32)
    return dfpo_err_set(err, DFPO_EUSAGE,
                        "%s: copy_shared_params: a model with weights in %s (copy between fp32 "
                        "models)",
                        dst->cfg.arch,
                        ops_dtype_name(d->wdtype != OPS_DTYPE_F32 ? d->wdtype : s->wdtype));
  for (int i = 0; i < d->ntensors && !rc; i++) {
    const rdec_tensor *a = &d->tensors[i];
    for (int j = 0; j < s->ntensors; j++) {
      const rdec_tensor *b = &s->tensors[j];
      if (strcmp(a->name, b->name) || a->rows != b->rows || a->cols != b->cols)
        continue;
      rc = model_copy_floats(dst, d->params + a->off, src, s->params + b->off,
                             (size_t)a->rows * a->cols, err);
      n++;
      break;
    }
  }
  if (copied)
    *copied = n;
  return rc;
}
static int vt_num_tensors(const model_t *m) {
  const rdec_model *r = rdec_of_const(m);
  return r->lora.r ? r->lora.ntensors : r->ntensors;
}
static int vt_tensor_at(const model_t *mm, int i, model_tensor *t) {
  const rdec_model *m = rdec_of_const(mm);
  const rdec_lora *z = &m->lora;
  if (z->r) { /* the adapters are the only trainable tensors */
    const rdec_tensor *b = &z->tensors[i];
    return model_tensor_fill(t, b->name, b->rows, b->cols, !b->vec, b->off, z->params, z->grads,
                             z->m1, z->m2);
  }
  const rdec_tensor *b = &m->tensors[i];
  if (b->w16) { /* frozen 16-bit weights: no fp32 view, no training state */
    int rc = model_tensor_fill(t, b->name, b->rows, b->cols, !b->vec, 0, NULL, NULL, NULL, NULL);
    t->dtype = m->wdtype;
    t->param16 = m->params16 + b->off;
    return rc;
  }
  return model_tensor_fill(t, b->name, b->rows, b->cols, !b->vec, b->off, m->params, m->grads,
                           m->m1, m->m2);
}
static int vt_ensure_train(model_t *m, dfpo_err *err) {
  return rdec_ensure_train(rdec_of(m), err);
}
static int vt_reserve(model_t *m, int B, int T, dfpo_err *err) {
  rdec_of(m)->fB = 0;
  (void)B, (void)T, (void)err; /* each forward pass grows the block as it needs */
  return DFPO_OK;
}
static int vt_forward(model_t *m, const model_batch *b, dfpo_err *err) {
  return rdec_forward(rdec_of(m), b, err);
}
static int vt_lm_logprobs(model_t *m, const int *targets, float *logp, float *ent, dfpo_err *err) {
  return rdec_lm_logprobs(rdec_of(m), targets, logp, ent, err);
}
static int vt_lm_backward(model_t *m, const float *dlogp, const float *dent, dfpo_err *err) {
  return rdec_lm_backward(rdec_of(m), dlogp, dent, err);
}
static int vt_lm_backward_logits(model_t *m, const float *dlogits, dfpo_err *err) {
  return rdec_lm_value_backward(rdec_of(m), NULL, NULL, dlogits, NULL, err);
}
static int vt_lm_loss(model_t *mm, const model_batch *b, const int *targets, int backward,
                      float *loss, dfpo_err *err) {
  if (backward)
    return rdec_lm_loss(rdec_of(mm), b, targets, loss, err);
  return model_lm_loss_forward(mm, b, targets, loss, err);
}
static int vt_score_tokens(model_t *m, const int *tokens, size_t n, double *nll_sum, size_t *scored,
                           dfpo_err *err) {
  return model_score_windows(m, tokens, n, nll_sum, scored, err);
}
static int vt_value_forward(model_t *m, float *values, dfpo_err *err) {
  return rdec_value_forward(rdec_of(m), values, err);
}
static int vt_value_backward(model_t *m, const float *dvalues, dfpo_err *err) {
  return rdec_value_backward(rdec_of(m), dvalues, err);
}
static int vt_class_forward(model_t *m, const int *at, float *logits, dfpo_err *err) {
  (void)at, (void)logits;
  return usage(m, err, "a classification head");
}
static int vt_class_backward(model_t *m, const float *dlogits, dfpo_err *err) {
  (void)dlogits;
  return usage(m, err, "a classification head");
}
static void vt_zero_grad(model_t *mm) {
  rdec_model *m = rdec_of(mm);
  const rdec_lora *z = &m->lora;
  if (rdec_ensure_train(m, NULL) == DFPO_OK && !mm->grads_zero)
    mm->ops->zero(z->r ? z->grads : m->grads, (z->r ? z->nparams : m->nparams) * sizeof(float));
  mm->grads_zero = 1;
}
static float vt_grad_norm(model_t *mm) {
  rdec_model *m = rdec_of(mm);
  const rdec_lora *z = &m->lora;
  if (z->r)
    return z->grads ? (float)sqrt(mm->ops->sumsq(z->grads, z->nparams)) : 0.0f;
  return m->grads ? (float)sqrt(mm->ops->sumsq(m->grads, m->nparams)) : 0.0f;
}
static const float *vt_decode_begin(model_t *m, const int *tokens, const int *kstart, int B, int T,
                                    int max_len, dfpo_err *err) {
  return rdec_decode_begin(rdec_of(m), tokens, kstart, B, T, max_len, err);
}
static const float *vt_decode_step(model_t *m, const int *next, dfpo_err *err) {
  return rdec_decode_step(rdec_of(m), next, err);
}
static int vt_decode_reorder(model_t *m, const int *src_rows, dfpo_err *err) {
  return rdec_decode_reorder(rdec_of(m), src_rows, err);
}
static void vt_forget(model_t *m) {
  rdec_forget(rdec_of(m));
}
static int vt_save(model_t *m, const char *path, int with_optimizer, dfpo_err *err) {
  return rdec_save(rdec_of(m), path, with_optimizer, err);
}
static int vt_export_safetensors(const model_t *m, const char *path, const model_export_opts *o,
                                 dfpo_err *err) {
  return rdec_export(rdec_of_const(m), path, o, err);
}

static int vt_import_adapters(model_t *m, const char *dir, dfpo_err *err) {
  return import_adapters(rdec_of(m), dir, err);
}
static int vt_add_lora(model_t *m, const model_lora_config *c, uint64_t seed, dfpo_err *err) {
  return rdec_add_lora(rdec_of(m), c, seed, err);
}
static int vt_lora_rank(const model_t *m) {
  return rdec_of_const(m)->lora.r;
}
static int vt_set_adapters(model_t *mm, int on, dfpo_err *err) {
  (void)err;
  rdec_model *m = rdec_of(mm);
  if (m->lora.on != !!on) {
    m->lora.on = !!on;
    /* the last logits (and a decoding's cache) belong to the other setting */
    m->have_lm = 0;
    m->base.last_logits = NULL;
  }
  return DFPO_OK;
}
/* A model over src's parameters (no copy), with adapters: a copy of src's. */
static int vt_base_view(model_t **out, const model_t *srcm, int adapters, dfpo_err *err) {
  *out = NULL;
  const rdec_model *src = rdec_of_const(srcm);
  const char *fam = family_name[src->cfg.family];
  if (src->params_borrowed)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: a base view of a view", fam);
  if (ops_default_backend() != src->base.ops)
    return dfpo_err_set(err, DFPO_EUSAGE, "%s: a base view must be made on its model's device",
                        fam);
  rdec_model *v;
  /* the base in src's precision (a 16-bit LoRA base too) */
  int rc =
      rdec_create(&v, &src->cfg, src->base.cfg.head, src->params, src->params16, src->wdtype, err);
  if (rc)
    goto out;
  v->view_of = (rdec_model *)src; /* counts the views; the weights stay as they are */
  v->view_of->nviews++;
  if (!adapters)
    goto out;
  char targets[256];
  model_lora_config c = lora_config_of(src, targets, sizeof targets);
  if ((rc = rdec_add_lora(v, &c, 0, err)) ||
      (rc = model_copy_floats(&v->base, v->lora.params, srcm, src->lora.params, src->lora.nparams,
                              err))) {
    rdec_destroy(v);
    return rc;
  }
  v->lora.on = src->lora.on;
out:
  *out = rc ? NULL : &v->base;
  return rc;
}
static int vt_lm_value_backward(model_t *m, const float *dlogp, const float *dent,
                                const float *dlogits, const float *dvalues, dfpo_err *err) {
  return rdec_lm_value_backward(rdec_of(m), dlogp, dent, dlogits, dvalues, err);
}

/* The backward pass always recomputes each layer from its saved input
 * (layer_bwd): activation checkpointing is this architecture's only way,
 * so the setting is accepted and changes nothing. */
static int vt_set_checkpointing(model_t *m, int on, dfpo_err *err) {
  (void)m, (void)on, (void)err;
  return DFPO_OK;
}
static int vt_checkpointing(const model_t *m) {
  (void)m;
  return 1;
}
static int vt_set_weight_dtype(model_t *m, ops_dtype d, dfpo_err *err) {
  return rdec_set_weight_dtype(rdec_of(m), d, err);
}
static ops_dtype vt_weight_dtype(const model_t *m) {
  return rdec_of_const(m)->wdtype;
}

const model_vtable rdec_vtable = {
    .arch = "rdec",
    .free = vt_free,
    .init_random = vt_init_random,
    .arena_bytes = vt_arena_bytes,
    .new_like = vt_new_like,
    .copy_params = vt_copy_params,
    .copy_shared_params = vt_copy_shared_params,
    .num_tensors = vt_num_tensors,
    .tensor_at = vt_tensor_at,
    .ensure_train = vt_ensure_train,
    .reserve = vt_reserve,
    .forward = vt_forward,
    .lm_logprobs = vt_lm_logprobs,
    .lm_backward = vt_lm_backward,
    .lm_backward_logits = vt_lm_backward_logits,
    .lm_loss = vt_lm_loss,
    .score_tokens = vt_score_tokens,
    .value_forward = vt_value_forward,
    .value_backward = vt_value_backward,
    .class_forward = vt_class_forward,
    .class_backward = vt_class_backward,
    .zero_grad = vt_zero_grad,
    .grad_norm = vt_grad_norm,
    .decode_begin = vt_decode_begin,
    .decode_step = vt_decode_step,
    .decode_reorder = vt_decode_reorder,
    .forget = vt_forget,
    .save = vt_save,
    .export_safetensors = vt_export_safetensors,
    .add_lora = vt_add_lora,
    .import_adapters = vt_import_adapters,
    .lora_rank = vt_lora_rank,
    .set_adapters = vt_set_adapters,
    .base_view = vt_base_view,
    .add_value_head = vt_add_value_head,
    .lm_value_backward = vt_lm_value_backward,
    .set_checkpointing = vt_set_checkpointing,
    .checkpointing = vt_checkpointing,
    .set_weight_dtype = vt_set_weight_dtype,
    .weight_dtype = vt_weight_dtype,
};
