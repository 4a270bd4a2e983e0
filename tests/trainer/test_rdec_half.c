/* The rotary decoders (GPT-J, GPT-NeoX, a grouped-query Llama) with their
 * weights kept in 16 bits (model_set_weight_dtype) on the CPU backend.
 *
 * References:
 *   - the model in 16 bits against the fp32 engine over the same weights
 *     widened (a copy converted and widened back): the products widen the
 *     weights and sum in fp32 through the same kernels (matmul_fwd_w16
 *     against matmul_fwd is checked to 1e-6, in practice bit for bit, by
 *     test_gpt2_half.c), so the two agree up to summation order: 1e-5
 *     relative on the summed NLL, greedy tokens (KV-cache decoding) equal;
 *     the rounding itself is pinned against PyTorch by test_gpt2_half.c;
 *   - model_arena_bytes by hand (arena_bytes_by_hand). */
#include "tests/support/support.h"
#include "tests/trainer/rdec_testutil.h"
#include "tests/trainer/train_testutil.h"
#include "trainer/model.h"
#include "trainer/ops.h"
#include "trainer/rdec.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V 64

/* Random weights far from the init's 0.02 (every term matters, and the
 * perplexity is well below the vocabulary's). */
static model_t *base_model(int family, uint64_t seed) {
  return rt_perturbed(family, V, seed, 0.4f);
}

static void model_in_16_bits(int family, int dtype) {
  model_t *a = base_model(family, 3 + (uint64_t)family);
  char what[64];
  snprintf(what, sizeof what, "%s %s", model_get_config(a)->arch, ops_dtype_name(dtype));
  int seq[24];
  double na;
  half_matches_widened(a, dtype, V, 12, seq, &na, what);
  model_free(a);
}

Test(rdec_half, gptj_bf16_and_f16_match_fp32_over_widened_weights) {
  model_in_16_bits(RDEC_GPTJ, OPS_DTYPE_BF16);
  model_in_16_bits(RDEC_GPTJ, OPS_DTYPE_F16);
}
Test(rdec_half, neox_bf16_and_f16_match_fp32_over_widened_weights) {
  model_in_16_bits(RDEC_NEOX, OPS_DTYPE_BF16);
  model_in_16_bits(RDEC_NEOX, OPS_DTYPE_F16);
}
Test(rdec_half, grouped_llama_bf16_and_f16_match_fp32_over_widened_weights) {
  model_in_16_bits(RDEC_LLAMA, OPS_DTYPE_BF16);
  model_in_16_bits(RDEC_LLAMA, OPS_DTYPE_F16);
}

/* The arenas of the tiny models by hand (a fresh model: parameters and the
 * [C] zero position table, 16 floats; no activations yet).
 *
 * Llama (tied, grouped): each layer input_layernorm 16, qkv_proj (16 + 2*8)
 * rows * 16 = 512, o_proj 16*16 = 256, post_attention_layernorm 16,
 * gate_up_proj 64*16 = 1024, down_proj 16*32 = 512: 2336; embed_tokens
 * 64*16 = 1024, norm 16: 2*2336 + 1040 = 5712 floats, + 16 = 5728 floats =
 * 22912 bytes. In 16 bits the four matrices of each layer and the
 * embedding, 2*(512 + 256 + 1024 + 512) + 1024 = 5632 weights = 11264
 * bytes; the rest 5712 - 5632 + 16 = 96 floats = 384 bytes: 11648 bytes.
 *
 * GPT-J (untied head with a bias, one LayerNorm per layer): each layer
 * ln_1 16+16, qkv_proj 48*16 = 768, out_proj 256, fc_in 32*16 = 512 + 32,
 * fc_out 16*32 = 512 + 16: 2128; wte 1024, ln_f 32, lm_head 1024 + 64:
 * 2*2128 + 2144 = 6400 floats, + 16 = 6416 floats = 25664 bytes. In 16
 * bits 2*(768 + 256 + 512 + 512) + 1024 + 1024 = 6144 weights = 12288
 * bytes; the rest 6400 - 6144 + 16 = 272 floats = 1088 bytes: 13376
 * bytes. */
Test(rdec_half, arena_bytes_by_hand) {
  static const struct {
    int family;
    size_t f32, w16, nparams;
  } want[] = {{RDEC_LLAMA, 22912, 11648, 5712}, {RDEC_GPTJ, 25664, 13376, 6400}};
  dfpo_err err;
  dfpo_err_clear(&err);
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
    for (int dtype = OPS_DTYPE_BF16; dtype <= OPS_DTYPE_F16; dtype++) {
      model_t *m = base_model(want[k].family, 1);
      cr_expect_eq(model_arena_bytes(m), want[k].f32, "%zu", model_arena_bytes(m));
      cr_expect_eq(model_num_params(m), want[k].nparams);
      cr_assert_eq(model_set_weight_dtype(m, dtype, &err), 0, "%s", err.msg);
      cr_expect_eq(model_arena_bytes(m), want[k].w16, "%zu", model_arena_bytes(m));
      cr_expect_eq(model_num_params(m), want[k].nparams);
      cr_assert_eq(model_set_weight_dtype(m, OPS_DTYPE_F32, &err), 0, "%s", err.msg);
      cr_expect_eq(model_arena_bytes(m), want[k].f32);
      model_free(m);
    }
}

/* The 16-bit tensors are the four matrices of each layer, the embedding
 * and the untied head; the norms and biases stay fp32. */
Test(rdec_half, which_tensors) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *m = base_model(RDEC_NEOX, 2);
  cr_assert_eq(model_set_weight_dtype(m, OPS_DTYPE_BF16, &err), 0, "%s", err.msg);
  int n16 = 0;
  for (int i = 0; i < model_num_tensors(m); i++) {
    model_tensor t;
    cr_assert_eq(model_tensor_at(m, i, &t, &err), 0, "%s", err.msg);
    int half = t.rows > 1;
    cr_expect_eq(t.dtype, half ? OPS_DTYPE_BF16 : OPS_DTYPE_F32, "%s", t.name);
    cr_expect(half ? t.param == NULL && t.param16 != NULL : t.param != NULL && !t.param16, "%s",
              t.name);
    n16 += half;
  }
  cr_expect_eq(n16, 2 * 4 + 2); /* four per layer, embed_in, embed_out */
  model_free(m);
}

/* A model in 16 bits is frozen (it saves and exports as the fp32 model of
 * its values; a base view shares its blocks); a model with training state
 * stays fp32 (a LoRA model's base may go to 16 bits: test_rdec_lora.c). */
Test(rdec_half, refusals) {
  dfpo_err err;
  dfpo_err_clear(&err);
  model_t *a = base_model(RDEC_LLAMA, 5), *h = NULL, *v = NULL;
  cr_assert_eq(model_clone(&h, a, &err), 0, "%s", err.msg);
  cr_assert_eq(model_set_weight_dtype(h, OPS_DTYPE_BF16, &err), 0, "%s", err.msg);
  cr_expect_eq(model_ensure_train(h, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "does not train"), "%s", err.msg);
  int tok[4] = {1, 2, 3, 4}, tgt[4] = {2, 3, 4, -1};
  float loss;
  cr_expect_eq(model_lm_loss_rows(h, tok, tgt, NULL, 1, 4, 1, &loss, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "does not train"), "%s", err.msg);
  /* without a backward pass the loss is computed */
  cr_expect_eq(model_lm_loss_rows(h, tok, tgt, NULL, 1, 4, 0, &loss, &err), 0, "%s", err.msg);
  cr_expect_eq(model_copy_params(a, h, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "different precisions"), "%s", err.msg);
  cr_expect_eq(model_copy_params(h, a, &err), DFPO_EUSAGE);
  int copied = 0;
  cr_expect_eq(model_copy_shared_params(a, h, &copied, &err), DFPO_EUSAGE);
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/m.bin", dir);
  /* saved and exported, it is the fp32 model of its values (the matrices
   * widened); a base view shares its 16-bit blocks */
  int seq0[6] = {1, 5, 9, 2, 7, 3};
  double nh, nw;
  size_t sc0;
  cr_assert_eq(model_score_tokens(h, seq0, 6, &nh, &sc0, &err), 0, "%s", err.msg);
  for (int e = 0; e < 2; e++) {
    model_t *w = NULL;
    snprintf(path, sizeof path, e ? "%s/m.safetensors" : "%s/m.bin", dir);
    cr_assert_eq(e ? model_export_safetensors(h, path, 1, &err) : model_save(h, path, 0, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(model_load(&w, path, &err), 0, "%s", err.msg);
    cr_expect_eq((int)model_weight_dtype(w), (int)OPS_DTYPE_F32);
    cr_assert_eq(model_score_tokens(w, seq0, 6, &nw, &sc0, &err), 0, "%s", err.msg);
    cr_expect(fabs(nh - nw) <= 1e-6 * fabs(nw), "%s: NLL %.9g, the 16-bit model %.9g",
              e ? "exported" : "saved", nw, nh);
    model_free(w);
  }
  cr_assert_eq(model_base_view(&v, h, &err), 0, "%s", err.msg);
  cr_expect_eq((int)model_weight_dtype(v), (int)OPS_DTYPE_BF16);
  model_free(v);
  v = NULL;
  /* two models in the same precision copy (both blocks) */
  model_t *h2 = base_model(RDEC_LLAMA, 9);
  cr_assert_eq(model_set_weight_dtype(h2, OPS_DTYPE_BF16, &err), 0, "%s", err.msg);
  cr_assert_eq(model_copy_params(h2, h, &err), 0, "%s", err.msg);
  int seq[8] = {1, 5, 9, 2, 7, 3, 3, 60};
  double n1, n2;
  size_t sc;
  cr_assert_eq(model_score_tokens(h, seq, 8, &n1, &sc, &err), 0, "%s", err.msg);
  cr_assert_eq(model_score_tokens(h2, seq, 8, &n2, &sc, &err), 0, "%s", err.msg);
  cr_expect_eq(n1, n2);
  model_free(h2);
  /* a model with training state refuses */
  cr_assert_eq(model_ensure_train(a, &err), 0, "%s", err.msg);
  cr_expect_eq(model_set_weight_dtype(a, OPS_DTYPE_F16, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "training state"), "%s", err.msg);
  /* a model with a base view of it alive refuses; freed, it converts */
  model_t *b = base_model(RDEC_GPTJ, 6);
  cr_assert_eq(model_base_view(&v, b, &err), 0, "%s", err.msg);
  cr_expect_eq(model_set_weight_dtype(b, OPS_DTYPE_BF16, &err), DFPO_EUSAGE);
  cr_expect(strstr(err.msg, "base view"), "%s", err.msg);
  cr_expect_eq(model_set_weight_dtype(v, OPS_DTYPE_BF16, &err), DFPO_EUSAGE);
  model_free(v);
  cr_expect_eq(model_set_weight_dtype(b, OPS_DTYPE_BF16, &err), 0, "%s", err.msg);
  model_free(a);
  model_free(b);
  model_free(h);
}

/* model_load_as: a Hugging Face folder of each family, and its native
 * checkpoint (saved with AdamW moments, which a 16-bit model does not
 * read), read straight into bf16 and f16 are the model that model_load
 * and model_set_weight_dtype give, bit for bit (every tensor's stored
 * bits, the arena, the NLL of a sequence), and they never hold the fp32
 * copy of their 16-bit tensors (rdec_import_safetensors_as and
 * rdec_load_native lay the blocks out for the dtype before reading). Also
 * fp32 through model_load_as, and a unknown dtype refused. */
Test(rdec_half, a_folder_loads_straight_into_16_bits) {
  char dir[256], path[300], native[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(native, sizeof native, "%s/native.ckpt", dir);
  dfpo_err err;
  dfpo_err_clear(&err);
  int fams[3] = {RDEC_GPTJ, RDEC_NEOX, RDEC_LLAMA}, dts[2] = {OPS_DTYPE_BF16, OPS_DTYPE_F16};
  for (int f = 0; f < 3; f++) {
    model_t *a = base_model(fams[f], 20 + (uint64_t)f);
    cr_assert_eq(model_export_safetensors(a, path, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(model_ensure_train(a, &err), 0, "%s", err.msg);
    cr_assert_eq(model_save(a, native, 1, &err), 0, "%s", err.msg);
    for (int d = 0; d < 4; d++) {
      model_t *conv = NULL, *direct = NULL;
      cr_assert_eq(model_load(&conv, dir, &err), 0, "%s", err.msg);
      cr_assert_eq(model_set_weight_dtype(conv, dts[d % 2], &err), 0, "%s", err.msg);
      cr_assert_eq(model_load_as(&direct, d < 2 ? dir : native, dts[d % 2], &err), 0, "%s",
                   err.msg);
      const char *arch = model_get_config(a)->arch, *dt = ops_dtype_name(dts[d % 2]);
      cr_expect_eq((int)model_weight_dtype(direct), dts[d % 2], "%s %s", arch, dt);
      char what[64];
      snprintf(what, sizeof what, "%s %s %s", arch, dt, d < 2 ? "folder" : "native");
      cr_expect_gt(expect_same_weights(direct, conv, what), 0, "%s: nothing in 16 bits", what);
      model_free(direct);
      model_free(conv);
    }
    model_t *f32 = NULL;
    cr_assert_eq(model_load_as(&f32, dir, OPS_DTYPE_F32, &err), 0, "%s", err.msg);
    cr_expect_eq(model_weight_dtype(f32), OPS_DTYPE_F32);
    model_free(f32);
    model_free(a);
  }
  model_t *m = NULL;
  cr_expect_eq(model_load_as(&m, dir, (ops_dtype)99, &err), DFPO_EUSAGE);
  cr_expect_null(m);
  ts_rmtree(dir);
}

/* model_add_value_head on each family: the value model made the long way,
 * bit for bit, in fp32 and on a bf16 trunk (test_gpt2_half.c's check). */
Test(rdec_half, a_value_head_in_place_is_the_value_model) {
  int fams[3] = {RDEC_GPTJ, RDEC_NEOX, RDEC_LLAMA};
  for (int f = 0; f < 3; f++) {
    model_t *a = base_model(fams[f], 40 + (uint64_t)f);
    char what[64];
    snprintf(what, sizeof what, "%s f32", model_get_config(a)->arch);
    expect_value_head_in_place(a, 23, OPS_DTYPE_F32, what);
    snprintf(what, sizeof what, "%s bf16", model_get_config(a)->arch);
    expect_value_head_in_place(a, 23, OPS_DTYPE_BF16, what);
    model_free(a);
  }
}
