/* Training: determinism (same seed and threads, bit-identical losses over 20
 * AdamW steps), resume from a native checkpoint (bit-identical to an
 * uninterrupted run), learning-rate schedules (hand-computed values) and a
 * tiny model learning a fixed sequence. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"
#include "trainer/model_internal.h"
#include "trainer/optim.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

enum { B = 8, T = 16, V = 50 };

static void batch(int *tok, int *tgt, int step) {
  /* a repeating pattern the model can learn, shifted per step */
  for (int b = 0; b < B; b++)
    for (int t = 0; t <= T; t++) {
      int v = (b * 7 + t * 3 + step) % V;
      if (t < T)
        tok[b * T + t] = v;
      if (t > 0)
        tgt[b * T + t - 1] = v;
    }
}

/* Runs steps [from, to) of a fixed recipe on m, writing each loss. */
static void train(model_t *m, int from, int to, float *losses) {
  int tok[B * T], tgt[B * T];
  opt_adamw opt = opt_adamw_default();
  opt.clip = 1.0f;
  opt_lr_schedule s = {OPT_LR_COSINE, 3e-3f, 3e-4f, 5, 20};
  dfpo_err err;
  dfpo_err_clear(&err);
  for (int step = from; step < to; step++) {
    batch(tok, tgt, step);
    model_zero_grad(m);
    cr_assert_eq(model_lm_loss_rows(m, tok, tgt, NULL, B, T, 1, &losses[step], &err), 0, "%s",
                 err.msg);
    cr_assert_eq(opt_adamw_step(m, &opt, opt_lr_at(&s, step), NULL, &err), 0, "%s", err.msg);
  }
}

Test(gpt2_train, deterministic_and_learning) {
  /* wide enough (B*T*C = 49152, B*T*V = 76800) that the OpenMP loops run
   * on all threads, not just the BLAS */
  gpt2_config cfg = tu_config(600, 2, 4, 384, 32);
  float a[20], b[20];
  model_t *m1 = tu_model(&cfg, 42), *m2 = tu_model(&cfg, 42);
  train(m1, 0, 20, a);
  train(m2, 0, 20, b);
  cr_expect_eq(memcmp(a, b, sizeof a), 0, "same seed, same threads: losses must match bit for bit");
  cr_expect_lt(a[19], a[0] - 0.5f, "loss %.3f -> %.3f: the model should learn the pattern",
               (double)a[0], (double)a[19]);
  /* a different seed is a different run */
  model_t *m3 = tu_model(&cfg, 43);
  float c[20];
  train(m3, 0, 1, c);
  cr_expect_neq(c[0], a[0]);
  model_free(m1);
  model_free(m2);
  model_free(m3);
}

Test(gpt2_train, resume_from_checkpoint_is_bit_identical) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/ckpt.bin", dir);
  gpt2_config cfg = tu_config(V, 2, 4, 32, 32);
  float a[20], b[20];
  model_t *m1 = tu_model(&cfg, 7);
  train(m1, 0, 20, a);
  model_t *m2 = tu_model(&cfg, 7), *m3 = NULL;
  train(m2, 0, 8, b);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(m2, path, 1, &err), 0, "%s", err.msg);
  model_free(m2);
  cr_assert_eq(model_load(&m3, path, &err), 0, "%s", err.msg);
  cr_expect_eq(model_step_count(m3), 8);
  train(m3, 8, 20, b);
  cr_expect_eq(memcmp(a, b, sizeof a), 0, "resumed run differs from the uninterrupted one");
  model_free(m1);
  model_free(m3);
  ts_rmtree(dir);
}

Test(gpt2_train, lr_schedules) {
  /* hand-computed: warmup 4 to 1.0 -> 0.25, 0.5, 0.75, 1.0; then over 8
   * more steps to 0.1: linear 1 - 0.9 k/8; cosine 0.1 + 0.45 (1 + cos(pi k/8)) */
  opt_lr_schedule c = {OPT_LR_CONSTANT, 1.0f, 0.1f, 4, 12};
  opt_lr_schedule l = c, k = c;
  l.kind = OPT_LR_LINEAR;
  k.kind = OPT_LR_COSINE;
  const float warm[4] = {0.25f, 0.5f, 0.75f, 1.0f};
  for (int i = 0; i < 4; i++) {
    cr_expect_float_eq(opt_lr_at(&c, i), warm[i], 1e-7);
    cr_expect_float_eq(opt_lr_at(&l, i), warm[i], 1e-7);
    cr_expect_float_eq(opt_lr_at(&k, i), warm[i], 1e-7);
  }
  cr_expect_float_eq(opt_lr_at(&c, 9), 1.0f, 1e-7);
  cr_expect_float_eq(opt_lr_at(&l, 6), 0.775f, 1e-6); /* k = 2 */
  cr_expect_float_eq(opt_lr_at(&l, 12), 0.1f, 1e-6);
  cr_expect_float_eq(opt_lr_at(&l, 30), 0.1f, 1e-6);
  cr_expect_float_eq(opt_lr_at(&k, 8), 0.55f, 1e-6); /* k = 4: cos = 0 */
  cr_expect_float_eq(opt_lr_at(&k, 6), 0.1f + 0.45f * (1.0f + 0.70710678f), 1e-6); /* k = 2 */
  cr_expect_float_eq(opt_lr_at(&k, 12), 0.1f, 1e-6);
}

Test(gpt2_train, clipping_and_nan_guard) {
  gpt2_config cfg = tu_config(V, 1, 2, 16, 32);
  model_t *m = tu_model(&cfg, 3), *ref = tu_model(&cfg, 3);
  int tok[B * T], tgt[B * T];
  batch(tok, tgt, 0);
  float loss, norm;
  dfpo_err err;
  dfpo_err_clear(&err);
  model_zero_grad(m);
  model_zero_grad(ref);
  cr_assert_eq(model_lm_loss_rows(m, tok, tgt, NULL, B, T, 1, &loss, &err), 0);
  cr_assert_eq(model_lm_loss_rows(ref, tok, tgt, NULL, B, T, 1, &loss, &err), 0);
  float n0 = model_grad_norm(m);
  cr_expect_gt(n0, 0.0f);
  /* clipping to a quarter of the norm = an unclipped step on gradients
   * scaled by clip / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_ */
  opt_adamw opt = opt_adamw_default(), noclip = opt;
  opt.clip = n0 / 4;
  float sc = opt.clip / (n0 + 1e-6f);
  int nt = gpt2_num_tensors(ref);
  for (int t = 0; t < nt; t++) {
    int r, c;
    float *g;
    gpt2_tensor_info(ref, t, NULL, &r, &c, NULL, &g);
    for (int i = 0; i < r * c; i++)
      g[i] *= sc;
  }
  cr_assert_eq(opt_adamw_step(m, &opt, 1e-3f, &norm, &err), 0);
  cr_assert_eq(opt_adamw_step(ref, &noclip, 1e-3f, NULL, &err), 0);
  cr_expect_float_eq(norm, n0, 1e-6, "the norm before clipping is reported");
  for (int t = 0; t < nt; t++) {
    int r, c;
    float *p, *q;
    gpt2_tensor_info(m, t, NULL, &r, &c, &p, NULL);
    gpt2_tensor_info(ref, t, NULL, NULL, NULL, &q, NULL);
    for (int i = 0; i < r * c; i++)
      cr_expect_float_eq(p[i], q[i], 1e-6, "tensor %d element %d", t, i);
  }
  /* the step consumed the gradients */
  cr_expect_eq(model_grad_norm(m), 0.0f);
  /* a NaN gradient stops the step with a message and leaves the weights */
  float *g;
  gpt2_tensor_info(m, 0, NULL, NULL, NULL, NULL, &g);
  g[0] = NAN;
  cr_expect_eq(opt_adamw_step(m, &opt, 1e-3f, NULL, &err), DFPO_ERUNTIME);
  cr_expect(strstr(err.msg, "NaN") != NULL, "%s", err.msg);
  model_free(m);
  model_free(ref);
}

/* The initialisation (gpt2.h) drawn one normal after the other, as written
 * here: LayerNorm weights 1, biases and LayerNorm biases 0, every other
 * tensor N(0, 0.02), the residual projections (c_proj.weight) N(0, 0.02 /
 * sqrt(2 L)), each value (float)z * sd, from one DFPO_STREAM_INIT stream in
 * tensor order. The engine splits the draws among threads (each chunk of
 * 65,536 from its own advanced start); the vocabulary of 5,000 x 64 makes
 * wte five chunks and a partial one. Same bits, on one thread and on two. */
Test(gpt2_train, init_is_the_sequential_draw) {
  gpt2_config cfg = tu_config(5000, 2, 2, 64, 32);
  int saved = omp_get_max_threads();
  for (int th = 1; th <= 2; th++) {
    omp_set_num_threads(th);
    model_t *m = tu_model(&cfg, 1234);
    dfpo_rng r;
    dfpo_rng_init(&r, 1234, DFPO_STREAM_INIT);
    float resid = 0.02f / sqrtf(2.0f * 2.0f);
    int nt = gpt2_num_tensors(m);
    size_t checked = 0;
    for (int t = 0; t < nt; t++) {
      const char *nm;
      int rows, cols;
      float *p;
      gpt2_tensor_info(m, t, &nm, &rows, &cols, &p, NULL);
      size_t n = (size_t)rows * cols;
      for (size_t k = 0; k < n; k++) {
        float want;
        if (strstr(nm, "ln_"))
          want = strstr(nm, ".weight") ? 1.0f : 0.0f;
        else if (strstr(nm, ".bias"))
          want = 0.0f;
        else
          want = (float)dfpo_rng_normal(&r) * (strstr(nm, "c_proj.weight") ? resid : 0.02f);
        cr_assert(memcmp(&want, &p[k], sizeof want) == 0, "%d threads: %s[%zu] %.9g, drawn %.9g",
                  th, nm, k, (double)p[k], (double)want);
      }
      checked += n;
    }
    cr_expect_eq(checked, model_num_params(m));
    model_free(m);
  }
  omp_set_num_threads(saved);
}

/* model_fill_normal, the helper behind every architecture's initialisation,
 * in both of its forms, against the normals drawn one after the other: n =
 * 200,003 is three chunks of 65,536 and a partial one, and first = 1,000
 * starts inside the stream (the first 1,000 normals are skipped). */
Test(gpt2_train, fill_normal_is_the_sequential_draw) {
  enum { N = 200003, FIRST = 1000 };
  float *got = malloc(N * sizeof(float));
  int saved = omp_get_max_threads();
  for (int form = 0; form < 2; form++)
    for (int th = 1; th <= 2; th++) {
      omp_set_num_threads(th);
      dfpo_rng start, r;
      dfpo_rng_init(&start, 99, DFPO_STREAM_INIT);
      double sd = form ? 0.007 : 0.02;
      model_fill_normal(got, N, &start, FIRST, sd, form);
      r = start;
      for (int k = 0; k < FIRST; k++)
        dfpo_rng_normal(&r);
      for (int k = 0; k < N; k++) {
        double z = dfpo_rng_normal(&r);
        float want = form ? (float)z * (float)sd : (float)(sd * z);
        cr_assert(memcmp(&want, &got[k], sizeof want) == 0, "form %d, %d threads: [%d] %.9g, %.9g",
                  form, th, k, (double)got[k], (double)want);
      }
    }
  omp_set_num_threads(saved);
  free(got);
}
