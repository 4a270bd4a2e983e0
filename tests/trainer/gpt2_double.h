/* A double-precision transcription of GPT-2's forward pass (with LoRA
 * adapters and a value head when the model has them), written from
 * docs/engine.md's equations (tanh GELU, LayerNorm eps 1e-5, 1/sqrt(d)
 * attention over the row's real keys, positions counted from the first real
 * token, the tied LM head) so that it shares no code with the engine: the
 * reference of the central-difference gradient tests (test_gpt2_lora.c,
 * test_gpt2_shared.c). Prefix ref_.
 *
 * The test model and batch are here: the sizes V, L, NH, C, R (adapter
 * rank), B, T; ALPHA (the adapters' alpha); the batch toks[B*T], tgts[B*T]
 * (-1: none) with left padding kst[B], and wgt(i), the weight of
 * log p(tgt_i). The including test defines vwgt(i), the weight of value_i
 * (read only with a value head), before including it. */
#ifndef DFPO_TESTS_TRAINER_GPT2_DOUBLE_H
#define DFPO_TESTS_TRAINER_GPT2_DOUBLE_H

#include "tests/trainer/gpt2_testutil.h"

#include <math.h>
#include <string.h>

enum { V = 11, L = 2, NH = 2, C = 8, P = 8, R = 2, B = 2, T = 5 };
static const float ALPHA = 3.0f;
static const int toks[B * T] = {3, 7, 1, 9, 4, 0, 0, 5, 2, 10};
static const int tgts[B * T] = {7, 1, 9, 4, 6, -1, -1, 2, 10, 8};
static const int kst[B] = {0, 2};

static float wgt(int i) {
  return tgts[i] >= 0 ? 0.5f + 0.1f * (float)(i % 5) : 0.0f;
}

/* parameters of the model as doubles, by pointer into the engine's floats */
typedef struct ref_model {
  const float *wte, *wpe, *lnfw, *lnfb;
  const float *lp[L][12];          /* the GP_* order of a layer */
  const float *A[L][4], *Bt[L][4]; /* adapters; NULL: not adapted */
  const float *vw, *vb;            /* a value head; NULL: none */
} ref_model;

static void ref_ln(double *out, const double *x, const float *w, const float *b) {
  double m = 0, v = 0;
  for (int c = 0; c < C; c++)
    m += x[c];
  m /= C;
  for (int c = 0; c < C; c++)
    v += (x[c] - m) * (x[c] - m);
  v /= C;
  double s = 1.0 / sqrt(v + 1e-5);
  for (int c = 0; c < C; c++)
    out[c] = (x[c] - m) * s * w[c] + b[c];
}

/* out[nout] = W x + b + (alpha/r) Bt^T (A x) */
static void ref_linear(double *out, const double *x, const float *w, const float *b, const float *A,
                       const float *Bt, int nin, int nout) {
  for (int j = 0; j < nout; j++) {
    double s = b[j];
    for (int i = 0; i < nin; i++)
      s += (double)w[(size_t)j * nin + i] * x[i];
    out[j] = s;
  }
  if (!A)
    return;
  double u[R];
  for (int q = 0; q < R; q++) {
    u[q] = 0;
    for (int i = 0; i < nin; i++)
      u[q] += (double)A[(size_t)q * nin + i] * x[i];
  }
  for (int j = 0; j < nout; j++)
    for (int q = 0; q < R; q++)
      out[j] += (double)ALPHA / R * u[q] * Bt[(size_t)q * nout + j];
}

static double ref_gelu(double x) {
  return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

/* sum_i w_i log p(tgt_i), plus with a value head sum_i u_i value_i
 * (value_i = vw . ln_f(h_i) + vb at every position) */
static double ref_objective(const ref_model *rm) {
  static double h[B * T][C], ln[B * T][C], qkv[B * T][3 * C], y[B * T][C], tmp[B * T][4 * C];
  double total = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      int pos = t < kst[b] ? 0 : t - kst[b], tok = toks[b * T + t];
      for (int c = 0; c < C; c++)
        h[b * T + t][c] = (double)rm->wte[tok * C + c] + rm->wpe[pos * C + c];
    }
  int hs = C / NH;
  for (int l = 0; l < L; l++) {
    const float *const *p = rm->lp[l];
    for (int i = 0; i < B * T; i++) {
      ref_ln(ln[i], h[i], p[0], p[1]);
      ref_linear(qkv[i], ln[i], p[2], p[3], rm->A[l][0], rm->Bt[l][0], C, 3 * C);
    }
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int hd = 0; hd < NH; hd++) {
          /* a real query sees the real keys up to itself; a padding one only itself */
          int k0 = t < kst[b] ? t : kst[b];
          double sc[T], mx = -1e300, z = 0;
          const double *q = qkv[b * T + t] + hd * hs;
          for (int k = k0; k <= t; k++) {
            const double *kk = qkv[b * T + k] + C + hd * hs;
            double d = 0;
            for (int e = 0; e < hs; e++)
              d += q[e] * kk[e];
            sc[k] = d / sqrt((double)hs);
            mx = sc[k] > mx ? sc[k] : mx;
          }
          for (int k = k0; k <= t; k++)
            z += (sc[k] = exp(sc[k] - mx));
          for (int e = 0; e < hs; e++) {
            double s = 0;
            for (int k = k0; k <= t; k++)
              s += sc[k] / z * qkv[b * T + k][2 * C + hd * hs + e];
            y[b * T + t][hd * hs + e] = s;
          }
        }
    for (int i = 0; i < B * T; i++) {
      ref_linear(tmp[i], y[i], p[4], p[5], rm->A[l][1], rm->Bt[l][1], C, C);
      for (int c = 0; c < C; c++)
        h[i][c] += tmp[i][c];
      ref_ln(ln[i], h[i], p[6], p[7]);
      ref_linear(tmp[i], ln[i], p[8], p[9], rm->A[l][2], rm->Bt[l][2], C, 4 * C);
      double g[4 * C], o[C];
      for (int c = 0; c < 4 * C; c++)
        g[c] = ref_gelu(tmp[i][c]);
      ref_linear(o, g, p[10], p[11], rm->A[l][3], rm->Bt[l][3], 4 * C, C);
      for (int c = 0; c < C; c++)
        h[i][c] += o[c];
    }
  }
  for (int i = 0; i < B * T; i++) {
    double f[C], lg[V], mx = -1e300, z = 0;
    ref_ln(f, h[i], rm->lnfw, rm->lnfb);
    if (rm->vw) {
      double v = *rm->vb;
      for (int c = 0; c < C; c++)
        v += (double)rm->vw[c] * f[c];
      total += vwgt(i) * v;
    }
    if (tgts[i] < 0)
      continue;
    for (int v = 0; v < V; v++) {
      lg[v] = 0;
      for (int c = 0; c < C; c++)
        lg[v] += (double)rm->wte[v * C + c] * f[c];
      mx = lg[v] > mx ? lg[v] : mx;
    }
    for (int v = 0; v < V; v++)
      z += exp(lg[v] - mx);
    total += wgt(i) * (lg[tgts[i]] - mx - log(z));
  }
  return total;
}

static void ref_bind(ref_model *rm, const model_t *m) {
  float *p;
  memset(rm, 0, sizeof *rm);
  gpt2_tensor_info(m, 0, NULL, NULL, NULL, &p, NULL);
  rm->wte = p;
  gpt2_tensor_info(m, 1, NULL, NULL, NULL, &p, NULL);
  rm->wpe = p;
  for (int l = 0; l < L; l++)
    for (int k = 0; k < 12; k++) {
      gpt2_tensor_info(m, 2 + 12 * l + k, NULL, NULL, NULL, &p, NULL);
      rm->lp[l][k] = p;
    }
  gpt2_tensor_info(m, 2 + 12 * L, NULL, NULL, NULL, &p, NULL);
  rm->lnfw = p;
  gpt2_tensor_info(m, 3 + 12 * L, NULL, NULL, NULL, &p, NULL);
  rm->lnfb = p;
  /* the value head the model uses: the trained tensor of that name (a LoRA
   * model's copy among its adapters) */
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    if (!strcmp(t.name, "v_head.summary.weight"))
      rm->vw = t.param;
    else if (!strcmp(t.name, "v_head.summary.bias"))
      rm->vb = t.param;
  }
  if (!model_lora_rank(m))
    return;
  static const char *kinds[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor a, bt;
    cr_assert_eq(model_tensor_at(m, i, &a, NULL), 0);
    if (!strstr(a.name, ".lora_A."))
      continue;
    cr_assert_eq(model_tensor_at(m, i + 1, &bt, NULL), 0);
    int l = -1, k = -1;
    char want[64];
    for (int ll = 0; ll < L && k < 0; ll++)
      for (int kk = 0; kk < 4; kk++) {
        snprintf(want, sizeof want, "h.%d.%s.lora_A.weight", ll, kinds[kk]);
        if (strcmp(want, a.name) == 0) {
          l = ll;
          k = kk;
        }
      }
    cr_assert(k >= 0, "unexpected tensor %s", a.name);
    rm->A[l][k] = a.param;
    rm->Bt[l][k] = bt.param;
  }
}

/* Checks the engine's objective fe (computed with its gradient
 * accumulated) against the transcription's to 1e-4 relative, and every
 * tensor model_tensor_at lists against central differences of the
 * transcription: per tensor the relative L2 error |g - fd| / (|g| + |fd|)
 * under 1e-3 (float32 gradients of a tiny model; a wrong term is off by
 * O(1)), and the objective must depend on it. */
static void ref_check_gradients(model_t *m, const ref_model *rm, double fe) {
  double fr = ref_objective(rm);
  cr_expect_lt(fabs(fe - fr), 1e-4 * fabs(fr) + 1e-6, "objective: engine %.9g, double %.9g", fe,
               fr);
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, NULL), 0);
    cr_assert_not_null(t.grad);
    double num = 0, dg = 0, df = 0;
    for (int k = 0; k < t.rows * t.cols; k++) {
      /* the reference reads the engine's floats: step the float and divide
       * by the step it actually took */
      float old = t.param[k];
      const float h = 1e-3f;
      t.param[k] = old + h;
      double hp = (double)t.param[k] - old, fp = ref_objective(rm);
      t.param[k] = old - h;
      double hm = old - (double)t.param[k], fm = ref_objective(rm);
      t.param[k] = old;
      double fd = (fp - fm) / (hp + hm);
      num += (t.grad[k] - fd) * (t.grad[k] - fd);
      dg += (double)t.grad[k] * t.grad[k];
      df += fd * fd;
    }
    double rel = sqrt(num) / (sqrt(dg) + sqrt(df) + 1e-300);
    cr_expect_gt(sqrt(df), 1e-4, "%s: the objective should depend on it", t.name);
    cr_expect_lt(rel, 1e-3, "%s: relative error %.3g (|g| %.4g, |fd| %.4g)", t.name, rel, sqrt(dg),
                 sqrt(df));
  }
}

#endif
