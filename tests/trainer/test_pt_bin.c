/* PyTorch's pytorch_model.bin (trainer/pt_read.c behind st_open): files
 * written by PyTorch 1.13's torch.save in tests/trainer/pt_bin_reference.py
 * from a GPT-2 this test exports as model.safetensors. The reference is the
 * safetensors path (itself checked against PyTorch in test_export.c): the
 * .bin folders must give bit-identical parameters and identical
 * log-likelihoods (model_score_tokens); F16/BF16 tensors the same as their
 * rounded values written as F32 safetensors; the legacy (pre-1.6) format
 * the same as the zip one. The bad files (a pickle calling os.system, a
 * truncated storage in either format, a pickle not torch.save's, a
 * non-contiguous view, a key twice, a nested dict, a NaN in an F32 tensor
 * and an infinity in an F16 one) are refused with messages saying why, and
 * the os.system pickle never runs. A byte-flip fuzz of both
 * formats checks (under ASan/UBSan) that nothing reads out of bounds.
 * Skips when /usr/bin/python3 lacks torch. */
#include "tests/support/support.h"
#include "tests/trainer/bert_testutil.h"
#include "tests/trainer/gpt2_testutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static model_t *load(const char *path) {
  model_t *m = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_load(&m, path, &err), 0, "%s: %s", path, err.msg);
  return m;
}

static double nll(model_t *m) {
  static const int toks[] = {1, 5, 9, 13, 2, 39, 0, 17, 22, 8, 8, 30, 4, 11, 27, 3, 35, 6, 19};
  double s = 0;
  size_t n = 0;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_score_tokens(m, toks, sizeof toks / sizeof *toks, &s, &n, &err), 0, "%s",
               err.msg);
  cr_assert_eq(n, sizeof toks / sizeof *toks - 1);
  return s;
}

/* 400 copies of src at dst, each with one byte near the start or the end
 * set at random (seeded): every load is a model or DFPO_EDATA. Returns how
 * many loaded. */
static int fuzz(const char *src, const char *dst, uint64_t s) {
  char *bytes;
  size_t n;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(src, &bytes, &n, &err), 0, "%s", err.msg);
  int loaded = 0;
  for (int it = 0; it < 400; it++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    size_t at = (it & 1) ? (size_t)(s >> 33) % 2048 : n - 1 - (size_t)(s >> 33) % 2048;
    char old = bytes[at];
    bytes[at] = (char)(s >> 20);
    FILE *f = fopen(dst, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    model_t *m = NULL;
    dfpo_err_clear(&err);
    int rc = model_load(&m, dst, &err);
    cr_assert(rc == DFPO_OK || rc == DFPO_EDATA, "byte %zu: rc %d %s", at, rc, err.msg);
    loaded += rc == DFPO_OK;
    model_free(m);
    bytes[at] = old;
  }
  free(bytes);
  return loaded;
}

Test(pt_bin, gpt2_folders_and_refusals, .timeout = 300) {
  if (!bt_have_python(1))
    cr_skip_test("/usr/bin/python3 has no torch module (Debian package python3-torch): the "
                 ".bin files cannot be written");
  char dir[256], src[300], out[300], p[400], q[400];
  ts_tmpdir(dir, sizeof dir);
  snprintf(src, sizeof src, "%s/src", dir);
  snprintf(out, sizeof out, "%s/out", dir);
  cr_assert_eq(mkdir(src, 0755), 0);
  gpt2_config cfg = tu_config(40, 2, 2, 8, 16);
  model_t *a = tu_model(&cfg, 7);
  tu_perturb(a, 11, 0.05f);
  dfpo_err err;
  dfpo_err_clear(&err);
  snprintf(p, sizeof p, "%s/model.safetensors", src);
  cr_assert_eq(model_export_safetensors(a, p, 1, &err), 0, "%s", err.msg);
  ts_run r;
  char *argv[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/pt_bin_reference.py", src,
                  out, NULL};
  ts_run_cmd(&r, argv, NULL, NULL);
  cr_assert_eq(r.status, 0, "pt_bin_reference.py failed: %s", r.err);
  ts_run_free(&r);

  double want = nll(a);
  /* the folder (pytorch_model.bin found), the file, the shard index */
  static const char *const same[] = {"bin", "bin/pytorch_model.bin", "shards",
                                     "shards/pytorch_model.bin.index.json"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", out, same[i]);
    model_t *b = load(p);
    tu_same_params(a, b);
    cr_expect_eq(nll(b), want, "%s: %.17g vs %.17g", same[i], nll(b), want);
    model_free(b);
  }
  /* F16 and BF16 storages: their values as the F32 safetensors holds them */
  snprintf(p, sizeof p, "%s/f16", out);
  snprintf(q, sizeof q, "%s/f16ref", out);
  model_t *h = load(p), *hr = load(q);
  tu_same_params(h, hr);
  cr_expect_eq(nll(h), nll(hr));
  cr_expect_neq(nll(h), want, "the rounding changed nothing: the F16 case tests nothing");
  model_free(h);
  model_free(hr);

  snprintf(p, sizeof p, "%s/evil.bin", out);
  tu_expect_load_fails(p, "os.system", "refused");
  snprintf(q, sizeof q, "%s/pwned", out);
  cr_expect_neq(access(q, F_OK), 0, "the pickle's os.system ran");
  snprintf(p, sizeof p, "%s/trunc.bin", out);
  tu_expect_load_fails(p, "truncated", "data/1");
  /* the legacy format: the same weights as f16/ */
  snprintf(p, sizeof p, "%s/legacy", out);
  snprintf(q, sizeof q, "%s/f16ref", out);
  h = load(p);
  hr = load(q);
  tu_same_params(h, hr);
  model_free(h);
  model_free(hr);
  snprintf(p, sizeof p, "%s/legacy-trunc.bin", out);
  tu_expect_load_fails(p, "legacy storage", "truncated");
  snprintf(p, sizeof p, "%s/pickle.bin", out);
  tu_expect_load_fails(p, "not torch.save's", "re-save");
  snprintf(p, sizeof p, "%s/view.bin", out);
  tu_expect_load_fails(p, "transformer.wte.weight", "not contiguous");
  snprintf(p, sizeof p, "%s/dup.bin", out);
  tu_expect_load_fails(p, "'transformer.wte.weight' twice", NULL);
  snprintf(p, sizeof p, "%s/nested.bin", out);
  tu_expect_load_fails(p, "'model'", "not a tensor");
  /* non-finite weights, F32 and F16, are refused naming tensor and element */
  snprintf(p, sizeof p, "%s/nan", out);
  tu_expect_load_fails(p, "'h.1.mlp.c_proj.weight': element 3 is NaN", NULL);
  snprintf(p, sizeof p, "%s/inf16", out);
  tu_expect_load_fails(p, "'wpe.weight': element 17 is +Inf", NULL);

  /* fuzz: single bytes set to random values, in the zip format's pickle
   * and directory, and in the legacy format's pickles and last storage */
  snprintf(p, sizeof p, "%s/bin/pytorch_model.bin", out);
  snprintf(q, sizeof q, "%s/bin/fuzz.bin", out); /* config.json beside */
  cr_log_info("fuzz, zip: %d of 400 mutated files still loaded", fuzz(p, q, 12345));
  snprintf(p, sizeof p, "%s/legacy/pytorch_model.bin", out);
  snprintf(q, sizeof q, "%s/legacy/fuzz.bin", out);
  cr_log_info("fuzz, legacy: %d of 400 mutated files still loaded", fuzz(p, q, 777));
  model_free(a);
  ts_rmtree(dir);
}
