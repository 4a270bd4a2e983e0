/* The narrowed LM head (model_batch.head_from, trainer/model.h) on every
 * architecture with an LM head: GPT-2, the rotary decoders (Llama,
 * GPT-NeoX) and T5. The reference is the same model's whole head (0), whose
 * numbers test_gpt2_golden.c, test_rdec.c and test_t5.c hold to PyTorch's:
 * from column h on, the log-probabilities, entropies, logits and every
 * parameter's gradient must be the whole head's (to float rounding: the
 * head's product runs over fewer rows, which may pick another kernel), the
 * columns before h must give 0, and a target there is refused. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "tests/trainer/rdec_testutil.h"
#include "tests/trainer/t5_testutil.h"
#include "trainer/t5.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 7, V = 8 };

/* All parameters' gradients, concatenated (caller frees). */
static float *grads(model_t *m, size_t *n) {
  dfpo_err err;
  size_t total = 0;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), 0, "%s", err.msg);
    total += (size_t)t.rows * t.cols;
  }
  float *g = malloc(total * sizeof(float)), *p = g;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), 0, "%s", err.msg);
    size_t k = (size_t)t.rows * t.cols;
    memcpy(p, t.grad, k * sizeof(float));
    p += k;
  }
  *n = total;
  return g;
}

/* One pass of m over the batch with the head from column h: logp, ent
 * [B T], the logits of columns >= h [B (T - h), V], and the gradients of
 * sum dlp logp + dent ent (by_logits 0; the weights 0 before column from)
 * or of sum dz logits (by_logits 1, dz on the [B (T - h), V] grid). */
static float *pass(model_t *m, const int *tok, const int *tgt, int np, int h, int from,
                   int by_logits, float *logp, float *ent, float *z, size_t *ng) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_batch b = {tok, NULL, B, T, np, h};
  cr_assert_eq(model_forward(m, &b, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgt, logp, ent, &err), 0, "%s", err.msg);
  int H = T - h;
  const float *lz = model_host_view(m, model_lm_logits(m), (size_t)B * H * V, z);
  if (lz != z)
    memcpy(z, lz, sizeof(float) * B * H * V);
  model_zero_grad(m);
  if (by_logits) {
    float dz[B * T * V];
    for (int i = 0; i < B * H * V; i++)
      dz[i] = 0.01f * (float)((i * 7) % 13 - 6);
    cr_assert_eq(model_lm_backward_logits(m, dz, &err), 0, "%s", err.msg);
  } else {
    float dlp[B * T], dent[B * T];
    for (int i = 0; i < B * T; i++) {
      /* the same weights in both passes: nothing before the narrow head */
      int col = i % T;
      dlp[i] = col < from ? 0.0f : 0.1f * (float)(i % 5 + 1);
      dent[i] = col < from ? 0.0f : -0.05f * (float)(i % 3 + 1);
    }
    cr_assert_eq(model_lm_backward(m, dlp, dent, &err), 0, "%s", err.msg);
  }
  return grads(m, ng);
}

static void expect_close(const float *a, const float *b, size_t n, double tol, const char *what) {
  for (size_t i = 0; i < n; i++)
    cr_expect(fabs((double)a[i] - b[i]) <= tol * (1.0 + fabs((double)b[i])), "%s[%zu]: %.9g %.9g",
              what, i, a[i], b[i]);
}

/* The gradients of sum dz logits over the whole head, dz the one pass
 * gives the narrowed head from h, with zeros before column h. */
static float *whole_by_logits(model_t *m, const int *tok, const int *tgt, int np, int h,
                              size_t *ng) {
  float dz[B * T * V], lp[B * T];
  memset(dz, 0, sizeof dz);
  for (int b = 0; b < B; b++)
    for (int t = h; t < T; t++)
      for (int v = 0; v < V; v++) {
        int i = (b * (T - h) + t - h) * V + v;
        dz[(b * T + t) * V + v] = 0.01f * (float)((i * 7) % 13 - 6);
      }
  dfpo_err err;
  model_batch whole = {tok, NULL, B, T, np, 0};
  cr_assert_eq(model_forward(m, &whole, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(m, tgt, lp, NULL, &err), 0, "%s", err.msg);
  model_zero_grad(m);
  cr_assert_eq(model_lm_backward_logits(m, dz, &err), 0, "%s", err.msg);
  return grads(m, ng);
}

/* The narrowed head from h against the whole head, on m; out_from is the
 * first column with an output (T5: n_prompt - 1; a decoder's 0). */
static void check(model_t *m, int np, int out_from, int h) {
  int tok[B * T], tgt[B * T];
  for (int i = 0; i < B * T; i++) {
    tok[i] = (i * 5 + 3) % V;
    int col = i % T;
    tgt[i] = col < h || col == T - 1 ? -1 : (i * 3 + 1) % V;
  }
  tgt[T + h] = -1; /* a position without a target inside the head */
  dfpo_err err;
  cr_assert_eq(model_ensure_train(m, &err), 0, "%s", err.msg);
  float lp0[B * T], en0[B * T], z0[B * T * V], lp1[B * T], en1[B * T], z1[B * T * V];
  for (int by_logits = 0; by_logits < 2; by_logits++) {
    size_t n0, n1;
    float *g0 = by_logits ? whole_by_logits(m, tok, tgt, np, h, &n0)
                          : pass(m, tok, tgt, np, 0, h, 0, lp0, en0, z0, &n0);
    float *g1 = pass(m, tok, tgt, np, h, h, by_logits, lp1, en1, z1, &n1);
    cr_assert_eq(n0, n1);
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++) {
        int i = b * T + t;
        if (t < h) {
          cr_expect_eq(lp1[i], 0.0f, "logp before the head at %d", i);
          cr_expect_eq(en1[i], 0.0f, "entropy before the head at %d", i);
          continue;
        }
        expect_close(&lp1[i], &lp0[i], 1, 1e-5, "logp");
        expect_close(&en1[i], &en0[i], 1, 1e-5, "entropy");
        expect_close(z1 + (size_t)(b * (T - h) + t - h) * V, z0 + (size_t)i * V, V, 1e-5, "logits");
      }
    expect_close(g1, g0, n0, 1e-4, by_logits ? "gradient from the logits" : "gradient");
    free(g0);
    free(g1);
  }
  /* a target before the head (where the model has an output there), and
   * heads outside the row, are refused */
  model_batch b = {tok, NULL, B, T, np, h};
  cr_assert_eq(model_forward(m, &b, &err), 0, "%s", err.msg);
  if (h - 1 >= out_from) {
    int bad[B * T];
    memcpy(bad, tgt, sizeof bad);
    bad[T + h - 1] = 1;
    cr_expect_eq(model_lm_logprobs(m, bad, lp1, NULL, &err), DFPO_EUSAGE);
    cr_expect(strstr(err.msg, "before the LM head's first column"), "%s", err.msg);
  }
  b.head_from = T;
  cr_expect_eq(model_forward(m, &b, &err), DFPO_EUSAGE);
  b.head_from = -1;
  cr_expect_eq(model_forward(m, &b, &err), DFPO_EUSAGE);
}

Test(head_from, gpt2) {
  gpt2_config c = tu_config(V, 2, 2, 16, 16);
  model_t *m = tu_model(&c, 5);
  check(m, 0, 0, 3);
  check(m, 4, 0, 1);
  model_free(m);
}

static void rdec_check(int family) {
  rdec_config c = rt_tiny(family, V);
  dfpo_err err;
  model_t *m;
  cr_assert_eq(rdec_new(&m, &c, &err), 0, "%s", err.msg);
  model_init_random(m, 6);
  check(m, 0, 0, 3);
  check(m, 0, 0, 6);
  model_free(m);
}

Test(head_from, llama) {
  rdec_check(RDEC_LLAMA);
}

Test(head_from, gpt_neox) {
  rdec_check(RDEC_NEOX);
}

/* T5's outputs are the decoder's, at columns n_prompt - 1 on: the head
 * from there (as the RL passes narrow it) and from a column after it. */
Test(head_from, t5) {
  for (int tied = 0; tied < 2; tied++) {
    t5_config c = tt_tiny(V, !tied, tied);
    dfpo_err err;
    model_t *m;
    cr_assert_eq(t5_new(&m, &c, &err), 0, "%s", err.msg);
    model_init_random(m, 7);
    check(m, 3, 2, 2);
    check(m, 3, 2, 4);
    model_free(m);
  }
}
