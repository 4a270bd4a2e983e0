/* Checkpoints: the native format and Hugging Face model.safetensors round
 * trips (bit-identical parameters), the "transformer." prefix, the tied
 * lm_head and buffers a Hugging Face file carries, the config from
 * config.json, and bad input: every malformed file gives DFPO_EDATA with a
 * message naming the file (and the tensor where there is one). The fuzz
 * tests mutate header bytes with a fixed seed; under the sanitizer build
 * they also prove the parsers never read out of bounds. Shard indexes and
 * folders as paths are read through model_load too. */
#include "tests/support/support.h"
#include "tests/trainer/gpt2_testutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static gpt2_config cfg_small(void) {
  return tu_config(40, 2, 2, 8, 16);
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

Test(gpt2_ckpt, native_round_trip) {
  char dir[256], path[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.ckpt", dir);
  gpt2_config cfg = cfg_small();
  cfg.head = MODEL_HEAD_CLASS;
  cfg.n_classes = 3;
  model_t *a = tu_model(&cfg, 1), *b = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(a, path, 0, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load(&b, path, &err), 0, "%s", err.msg);
  cr_expect_eq(memcmp(gpt2_get_config(a), gpt2_get_config(b), sizeof cfg), 0);
  tu_same_params(a, b);
  model_free(a);
  model_free(b);
  ts_rmtree(dir);
}

Test(gpt2_ckpt, safetensors_round_trip_and_config_json) {
  char dir[256], path[300], cjson[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(cjson, sizeof cjson, "%s/config.json", dir);
  gpt2_config cfg = cfg_small();
  cfg.head = MODEL_HEAD_VALUE;
  model_t *a = tu_model(&cfg, 2), *b = NULL;
  tu_perturb(a, 3, 1.0f);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_export_safetensors(a, path, 1, &err), 0, "%s", err.msg);
  cr_assert_eq(model_load(&b, path, &err), 0, "%s", err.msg);
  cr_expect_eq(memcmp(gpt2_get_config(a), gpt2_get_config(b), sizeof cfg), 0);
  tu_same_params(a, b);
  model_free(b);
  b = NULL;

  /* a Hugging Face GPT2LMHeadModel state dict: "transformer." names, the
   * tied lm_head, attention-mask buffers, no __metadata__; the config comes
   * from config.json beside the file */
  char *data;
  size_t len;
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0);
  uint64_t hl;
  memcpy(&hl, data, 8);
  cJSON *h = cJSON_ParseWithLength(data + 8, hl), *out = cJSON_CreateObject();
  cJSON *it;
  size_t wte_bytes = 0, wte_at = 0, dl = len - 8 - hl;
  cJSON_ArrayForEach(it, h) {
    if (strcmp(it->string, "__metadata__") == 0)
      continue;
    char name[128];
    snprintf(name, sizeof name, "transformer.%s", it->string);
    cJSON_AddItemToObject(out, name, cJSON_Duplicate(it, 1));
    if (strcmp(it->string, "wte.weight") == 0) {
      /* a copy of wte's bytes after the data (tensors never overlap) */
      cJSON *lm = cJSON_Duplicate(it, 1);
      const cJSON *of = cJSON_GetObjectItem(it, "data_offsets");
      wte_at = (size_t)cJSON_GetArrayItem(of, 0)->valuedouble;
      wte_bytes = (size_t)cJSON_GetArrayItem(of, 1)->valuedouble - wte_at;
      cJSON *lof = cJSON_GetObjectItem(lm, "data_offsets");
      cJSON_ReplaceItemInArray(lof, 0, cJSON_CreateNumber((double)dl));
      cJSON_ReplaceItemInArray(lof, 1, cJSON_CreateNumber((double)(dl + wte_bytes)));
      cJSON_AddItemToObject(out, "lm_head.weight", lm);
    }
  }
  cr_assert_gt(wte_bytes, 0);
  cJSON *buf = cJSON_CreateObject();
  cJSON_AddStringToObject(buf, "dtype", "BOOL");
  cJSON *sh = cJSON_AddArrayToObject(buf, "shape");
  cJSON_AddItemToArray(sh, cJSON_CreateNumber(1));
  cJSON *of = cJSON_AddArrayToObject(buf, "data_offsets");
  cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(dl + wte_bytes)));
  cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(dl + wte_bytes + 1)));
  cJSON_AddItemToObject(out, "transformer.h.0.attn.bias", buf);
  char *js = cJSON_PrintUnformatted(out);
  size_t jl = strlen(js), nl = 8 + jl + dl + wte_bytes + 1;
  char *nd = malloc(nl);
  uint64_t njl = jl;
  memcpy(nd, &njl, 8);
  memcpy(nd + 8, js, jl);
  memcpy(nd + 8 + jl, data + 8 + hl, dl);
  memcpy(nd + 8 + jl + dl, data + 8 + hl + wte_at, wte_bytes);
  nd[nl - 1] = 1;
  char hf[300];
  snprintf(hf, sizeof hf, "%s/hf.safetensors", dir);
  write_bytes(hf, nd, nl);
  cr_assert_eq(model_load(&b, hf, &err), 0, "%s", err.msg);
  tu_same_params(a, b);
  model_free(b);
  b = NULL;
  /* without config.json, n_head cannot be known */
  remove(cjson);
  tu_expect_load_fails(hf, hf, "n_head");
  /* the caller's config wins; a wrong one names the tensor that disagrees */
  gpt2_config wrong = cfg;
  wrong.n_embd = 12;
  wrong.n_head = 3;
  cr_expect_eq(gpt2_import_safetensors(&b, hf, &wrong, &err), DFPO_EDATA);
  cr_expect(strstr(err.msg, "wte.weight") && strstr(err.msg, "[40, 8]"), "%s", err.msg);
  free(js);
  free(nd);
  free(data);
  cJSON_Delete(h);
  cJSON_Delete(out);
  model_free(a);
  ts_rmtree(dir);
}

Test(gpt2_ckpt, bad_native_checkpoints) {
  char dir[256], path[300], bad[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/good.ckpt", dir);
  snprintf(bad, sizeof bad, "%s/bad.ckpt", dir);
  gpt2_config cfg = cfg_small();
  model_t *a = tu_model(&cfg, 4);
  dfpo_err err;
  dfpo_err_clear(&err);
  model_zero_grad(a); /* so that the optimiser state is written */
  cr_assert_eq(model_save(a, path, 1, &err), 0, "%s", err.msg);
  char *data;
  size_t len;
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0);

  /* truncated: in the header, in the parameters (named), in the moments */
  write_bytes(bad, data, 40);
  tu_expect_load_fails(bad, bad, "truncated");
  write_bytes(bad, data, 64 + 4 * (40 * 8 + 16 * 8 + 5));
  tu_expect_load_fails(bad, bad, "h.0.ln_1.weight");
  write_bytes(bad, data, len - 4);
  tu_expect_load_fails(bad, bad, "moment");
  /* trailing bytes */
  char *longer = malloc(len + 4);
  memcpy(longer, data, len);
  memset(longer + len, 0, 4);
  write_bytes(bad, longer, len + 4);
  tu_expect_load_fails(bad, bad, "trailing");
  free(longer);
  /* wrong magic (then it is not a safetensors file either) */
  data[0] = 'X';
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "neither a dfpo checkpoint");
  data[0] = 'D';
  /* wrong version */
  data[8] = 9;
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "version 9");
  data[8] = 1;
  /* a config that does not match the tensors: one layer more */
  data[16] = 3;
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "do not match");
  data[16] = 2;
  /* a config that makes no sense */
  data[20] = 3; /* n_head 3 does not divide n_embd 8 */
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "n_head");
  free(data);
  model_free(a);
  ts_rmtree(dir);
}

/* Rewrites the header of a safetensors file through edit(). */
static void st_edit(const char *src, const char *dst, void (*edit)(cJSON *h)) {
  char *data;
  size_t len;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(src, &data, &len, &err), 0);
  uint64_t hl;
  memcpy(&hl, data, 8);
  cJSON *h = cJSON_ParseWithLength(data + 8, hl);
  edit(h);
  char *js = cJSON_PrintUnformatted(h);
  uint64_t jl = strlen(js);
  FILE *f = fopen(dst, "wb");
  fwrite(&jl, 8, 1, f);
  fwrite(js, 1, jl, f);
  fwrite(data + 8 + hl, 1, len - 8 - hl, f);
  fclose(f);
  free(js);
  cJSON_Delete(h);
  free(data);
}

static void set_offsets(cJSON *h, const char *name, double b, double e) {
  cJSON *of = cJSON_GetObjectItem(cJSON_GetObjectItem(h, name), "data_offsets");
  cJSON_ReplaceItemInArray(of, 0, cJSON_CreateNumber(b));
  cJSON_ReplaceItemInArray(of, 1, cJSON_CreateNumber(e));
}
static void ed_offsets_past_end(cJSON *h) {
  set_offsets(h, "ln_f.bias", 1e6, 1e6 + 32);
}
static void ed_bytes_lie(cJSON *h) {
  const cJSON *of =
      cJSON_GetObjectItem(cJSON_GetObjectItem(h, "h.1.mlp.c_fc.bias"), "data_offsets");
  double b = cJSON_GetArrayItem(of, 0)->valuedouble;
  set_offsets(h, "h.1.mlp.c_fc.bias", b, b + 8);
}
static void ed_shape_lies(cJSON *h) {
  cJSON *sh = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "h.0.attn.c_attn.weight"), "shape");
  cJSON_ReplaceItemInArray(sh, 0, cJSON_CreateNumber(24));
  cJSON_ReplaceItemInArray(sh, 1, cJSON_CreateNumber(8));
}
static void ed_dtype(cJSON *h) {
  cJSON *e = cJSON_GetObjectItem(h, "wpe.weight");
  cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString("I32"));
}
static void ed_missing(cJSON *h) {
  cJSON_DeleteItemFromObject(h, "h.1.ln_2.bias");
}
static void ed_not_object(cJSON *h) {
  cJSON_ReplaceItemInObject(h, "wte.weight", cJSON_CreateString("nope"));
}

Test(gpt2_ckpt, bad_safetensors) {
  char dir[256], path[300], bad[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  gpt2_config cfg = cfg_small();
  model_t *a = tu_model(&cfg, 5);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_export_safetensors(a, path, 0, &err), 0, "%s", err.msg);
  st_edit(path, bad, ed_offsets_past_end);
  tu_expect_load_fails(bad, bad, "ln_f.bias");
  st_edit(path, bad, ed_bytes_lie);
  tu_expect_load_fails(bad, bad, "h.1.mlp.c_fc.bias");
  st_edit(path, bad, ed_shape_lies);
  tu_expect_load_fails(bad, bad, "h.0.attn.c_attn.weight");
  st_edit(path, bad, ed_dtype);
  tu_expect_load_fails(bad, bad, "wpe.weight");
  st_edit(path, bad, ed_missing);
  tu_expect_load_fails(bad, bad, "h.1.ln_2.bias");
  st_edit(path, bad, ed_not_object);
  tu_expect_load_fails(bad, bad, "wte.weight");
  /* a header length past the end, and a header that is not JSON */
  char *data;
  size_t len;
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0);
  uint64_t huge = len;
  memcpy(data, &huge, 8);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "header length");
  uint64_t hl = 16;
  memcpy(data, &hl, 8);
  write_bytes(bad, data, len);
  tu_expect_load_fails(bad, bad, "JSON");
  /* truncated data */
  free(data);
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0);
  write_bytes(bad, data, len - 100);
  tu_expect_load_fails(bad, bad, NULL);
  free(data);
  model_free(a);
  ts_rmtree(dir);
}

/* Random mutations of the header bytes: every load either succeeds or
 * fails with DFPO_EDATA and a message; none crashes or leaks. */
static void fuzz_file(const char *good, const char *bad, size_t header_bytes, uint64_t seed,
                      int rounds) {
  char *data;
  size_t len;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(dfpo_read_file(good, &data, &len, &err), 0);
  char *copy = malloc(len);
  dfpo_rng r;
  dfpo_rng_init(&r, seed, 31);
  int failed = 0;
  for (int i = 0; i < rounds; i++) {
    memcpy(copy, data, len);
    int flips = 1 + (int)dfpo_rng_below(&r, 4);
    for (int k = 0; k < flips; k++) {
      size_t at = dfpo_rng_below(&r, (uint32_t)(header_bytes < len ? header_bytes : len));
      copy[at] = (char)dfpo_rng_below(&r, 256);
    }
    size_t cut = dfpo_rng_below(&r, 8) == 0 ? dfpo_rng_below(&r, (uint32_t)len) : len;
    write_bytes(bad, copy, cut);
    model_t *m = NULL;
    dfpo_err_clear(&err);
    int rc = model_load(&m, bad, &err);
    if (rc) {
      failed++;
      cr_expect_eq(rc, DFPO_EDATA, "round %d: rc %d (%s)", i, rc, err.msg);
      cr_expect(strstr(err.msg, bad) != NULL, "round %d: message does not name the file: %s", i,
                err.msg);
    }
    model_free(m);
  }
  cr_expect_gt(failed, rounds / 4, "most mutations should be caught");
  free(copy);
  free(data);
}

Test(gpt2_ckpt, fuzz_native_header) {
  char dir[256], path[300], bad[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/good.ckpt", dir);
  snprintf(bad, sizeof bad, "%s/fuzz.ckpt", dir);
  gpt2_config cfg = cfg_small();
  model_t *a = tu_model(&cfg, 6);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_save(a, path, 0, &err), 0, "%s", err.msg);
  fuzz_file(path, bad, 64, 1, 400);
  model_free(a);
  ts_rmtree(dir);
}

Test(gpt2_ckpt, fuzz_safetensors_header) {
  char dir[256], path[300], bad[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/fuzz.safetensors", dir);
  gpt2_config cfg = cfg_small();
  model_t *a = tu_model(&cfg, 7);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_export_safetensors(a, path, 0, &err), 0, "%s", err.msg);
  char *data;
  size_t len;
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0);
  uint64_t hl;
  memcpy(&hl, data, 8);
  free(data);
  fuzz_file(path, bad, 8 + (size_t)hl, 2, 400);
  model_free(a);
  ts_rmtree(dir);
}

Test(gpt2_ckpt, copy_params_for_reference_models) {
  gpt2_config cfg = cfg_small(), other = cfg;
  other.n_layer = 1;
  model_t *a = tu_model(&cfg, 8), *b = tu_model(&cfg, 9), *c = tu_model(&other, 9);
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_copy_params(b, a, &err), 0, "%s", err.msg);
  tu_same_params(a, b);
  cr_expect_eq(model_copy_params(c, a, &err), DFPO_EUSAGE);
  model_free(a);
  model_free(b);
  model_free(c);
}

/* A value model's trunk from a policy (dfpo train's value model): every
 * tensor of the same name and shape is copied, the value head keeps its own
 * initialisation. model_host_view of a CPU model is the buffer itself. */
Test(gpt2_ckpt, copy_shared_params_for_value_models) {
  gpt2_config cfg = cfg_small(), vc = cfg;
  vc.head = MODEL_HEAD_VALUE;
  model_t *p = tu_model(&cfg, 8), *v = tu_model(&vc, 9), *v0 = tu_model(&vc, 9);
  dfpo_err err;
  dfpo_err_clear(&err);
  int copied = -1;
  cr_assert_eq(model_copy_shared_params(v, p, &copied, &err), 0, "%s", err.msg);
  cr_expect_eq(copied, gpt2_num_tensors(p), "every policy tensor has a twin in the value model");
  int np = gpt2_num_tensors(p), heads = 0;
  for (int i = 0; i < gpt2_num_tensors(v); i++) {
    const char *name;
    int r, c;
    float *pv, *pv0, *pp = NULL;
    gpt2_tensor_info(v, i, &name, &r, &c, &pv, NULL);
    gpt2_tensor_info(v0, i, NULL, NULL, NULL, &pv0, NULL);
    for (int j = 0; j < np && !pp; j++) {
      const char *pn;
      float *q;
      gpt2_tensor_info(p, j, &pn, NULL, NULL, &q, NULL);
      if (!strcmp(pn, name))
        pp = q;
    }
    size_t bytes = sizeof(float) * (size_t)r * c;
    if (pp) {
      cr_expect_eq(memcmp(pv, pp, bytes), 0, "%s was not copied", name);
    } else {
      heads++;
      cr_expect_eq(memcmp(pv, pv0, bytes), 0, "%s (the head) changed", name);
    }
  }
  cr_expect_gt(heads, 0);
  int tok[2] = {1, 2};
  cr_assert_eq(model_forward_rows(p, tok, NULL, 1, 2, &err), 0, "%s", err.msg);
  cr_assert_eq(model_lm_logprobs(p, NULL, NULL, NULL, &err), 0, "%s", err.msg);
  float buf[80];
  const float *z = model_lm_logits(p);
  cr_expect(z && model_host_view(p, z, 80, buf) == z, "a CPU model's logits are viewed in place");
  model_free(p);
  model_free(v);
  model_free(v0);
}

/* Writes text to dir/name. */
static void put(const char *dir, const char *name, const char *text) {
  char p[400];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  ts_write_text(p, text);
}

/* Sharded weights (model.safetensors.index.json and the shards it names),
 * a folder as the path, and the config.json an export without a tokenizer
 * writes: bos/eos null, not GPT-2's 50256 (this model has 40 ids). */
Test(gpt2_ckpt, shard_index_folder_and_config_ids) {
  char dir[256], st[300], idx[300], cjson[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(st, sizeof st, "%s/model.safetensors", dir);
  snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
  snprintf(cjson, sizeof cjson, "%s/config.json", dir);
  gpt2_config cfg = cfg_small();
  model_t *a = tu_model(&cfg, 4), *b = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_export_safetensors(a, st, 1, &err), 0, "%s", err.msg);
  cJSON *cj = ts_read_json(cjson);
  cr_expect(cJSON_IsNull(cJSON_GetObjectItem(cj, "bos_token_id")));
  cr_expect(cJSON_IsNull(cJSON_GetObjectItem(cj, "eos_token_id")));
  cr_expect_eq(cJSON_GetObjectItem(cj, "vocab_size")->valueint, 40);
  cr_expect_eq(cJSON_GetObjectItem(cj, "n_positions")->valueint, 16);
  cJSON_Delete(cj);
  /* the folder itself */
  cr_assert_eq(model_load(&b, dir, &err), 0, "%s", err.msg);
  tu_same_params(a, b);
  model_free(b);
  b = NULL;
  /* one shard: every tensor in shard.safetensors */
  char shard[300];
  snprintf(shard, sizeof shard, "%s/shard.safetensors", dir);
  cr_assert_eq(rename(st, shard), 0);
  dfpo_buf map;
  dfpo_buf_init(&map, DFPO_NOCAP);
  dfpo_buf_adds(&map, "{\"metadata\": {}, \"weight_map\": {", &err);
  for (int i = 0; i < gpt2_num_tensors(a); i++) {
    const char *name;
    gpt2_tensor_info(a, i, &name, NULL, NULL, NULL, NULL);
    dfpo_buf_addf(&map, &err, "%s\"transformer.%s\": \"shard.safetensors\"", i ? ", " : "", name);
  }
  dfpo_buf_adds(&map, "}}", &err);
  /* the exported names carry no prefix: the index must say where each is */
  put(dir, "model.safetensors.index.json", map.data);
  tu_expect_load_fails(idx, "'transformer.wte.weight' is not in", "shard.safetensors");
  dfpo_buf_reset(&map);
  dfpo_buf_adds(&map, "{\"weight_map\": {", &err);
  for (int i = 0; i < gpt2_num_tensors(a); i++) {
    const char *name;
    gpt2_tensor_info(a, i, &name, NULL, NULL, NULL, NULL);
    dfpo_buf_addf(&map, &err, "%s\"%s\": \"shard.safetensors\"", i ? ", " : "", name);
  }
  dfpo_buf_adds(&map, "}}", &err);
  put(dir, "model.safetensors.index.json", map.data);
  cr_assert_eq(model_load(&b, idx, &err), 0, "%s", err.msg);
  tu_same_params(a, b);
  model_free(b);
  b = NULL;
  /* the folder finds the index when model.safetensors is absent */
  cr_assert_eq(model_load(&b, dir, &err), 0, "%s", err.msg);
  model_free(b);
  b = NULL;
  /* a tensor in two shards */
  char *bytes;
  size_t n;
  cr_assert_eq(dfpo_read_file(shard, &bytes, &n, &err), 0);
  char two[300];
  snprintf(two, sizeof two, "%s/two.safetensors", dir);
  write_bytes(two, bytes, n);
  free(bytes);
  put(dir, "model.safetensors.index.json",
      "{\"weight_map\": {\"wte.weight\": \"shard.safetensors\", \"wpe.weight\": "
      "\"two.safetensors\"}}");
  tu_expect_load_fails(idx, "is in both", "two.safetensors");
  put(dir, "model.safetensors.index.json",
      "{\"weight_map\": {\"wte.weight\": \"../shard.safetensors\"}}");
  tu_expect_load_fails(idx, "not the name of a file beside the index", NULL);
  put(dir, "model.safetensors.index.json",
      "{\"weight_map\": {\"wte.weight\": \"gone.safetensors\"}}");
  tu_expect_load_fails(idx, "gone.safetensors", NULL);
  put(dir, "model.safetensors.index.json", "{\"metadata\": {}}");
  tu_expect_load_fails(idx, "weight_map", NULL);
  /* a BERT's shards are not read */
  put(dir, "config.json", "{\"model_type\": \"bert\"}");
  tu_expect_load_fails(idx, "sharded weights are read for GPT-2 only", NULL);
  /* a folder with neither file */
  remove(idx);
  tu_expect_load_fails(dir, "a folder without weights", "pytorch_model.bin.index.json");
  /* a pytorch_model.bin is read (tests/trainer/test_pt_bin.c): this one is
   * not a torch.save file */
  put(dir, "pytorch_model.bin", "x");
  tu_expect_load_fails(dir, "pytorch_model.bin", "too short");
  dfpo_buf_free(&map);
  model_free(a);
  ts_rmtree(dir);
}

/* The parameter pointer of the tensor named name in a CPU model. */
static float *param_of(model_t *m, const char *name) {
  for (int i = 0; i < gpt2_num_tensors(m); i++) {
    const char *n;
    float *p;
    gpt2_tensor_info(m, i, &n, NULL, NULL, &p, NULL);
    if (strcmp(n, name) == 0)
      return p;
  }
  cr_assert_fail("no tensor %s", name);
  return NULL;
}

/* A NaN or an infinity in a checkpoint is refused at load, naming the
 * tensor and the element: native (parameters and AdamW moments),
 * safetensors (F32 and F16) and a folder. Before, all of these loaded and
 * the NaN surfaced later as a NaN loss or "every token is masked". */
Test(gpt2_ckpt, non_finite_weights_refused) {
  char dir[256], path[300], st[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/nan.ckpt", dir);
  snprintf(st, sizeof st, "%s/model.safetensors", dir);
  gpt2_config cfg = cfg_small();
  model_t *a = tu_model(&cfg, 6);
  dfpo_err err;
  dfpo_err_clear(&err);
  float *p = param_of(a, "h.1.attn.c_proj.weight");
  p[5] = NAN;
  cr_assert_eq(model_save(a, path, 0, &err), 0, "%s", err.msg);
  tu_expect_load_fails(path, "tensor 'h.1.attn.c_proj.weight' has NaN at element 5", NULL);
  cr_assert_eq(model_export_safetensors(a, st, 1, &err), 0, "%s", err.msg);
  /* the export writes Conv1D weights transposed: [in=8, out=8], so
   * element (row 0, col 5) is at 5 * 8 + 0 */
  tu_expect_load_fails(st, "'h.1.attn.c_proj.weight': element 40 is NaN", NULL);
  tu_expect_load_fails(dir, "'h.1.attn.c_proj.weight': element 40 is NaN", NULL);
  p[5] = 0.25f;
  p = param_of(a, "ln_f.bias");
  p[7] = -INFINITY;
  cr_assert_eq(model_save(a, path, 0, &err), 0, "%s", err.msg);
  tu_expect_load_fails(path, "tensor 'ln_f.bias' has an infinity at element 7", NULL);
  cr_assert_eq(model_export_safetensors(a, st, 1, &err), 0, "%s", err.msg);
  tu_expect_load_fails(st, "'ln_f.bias': element 7 is -Inf", NULL);
  p[7] = 0.0f;
  /* a NaN in the second AdamW moment of a training checkpoint: the last
   * float of the file is the last tensor's last element */
  model_zero_grad(a);
  cr_assert_eq(model_save(a, path, 1, &err), 0, "%s", err.msg);
  char *data;
  size_t len;
  cr_assert_eq(dfpo_read_file(path, &data, &len, &err), 0);
  float nan = NAN;
  memcpy(data + len - 4, &nan, 4);
  write_bytes(path, data, len);
  free(data);
  tu_expect_load_fails(path, "second AdamW moment of tensor 'ln_f.bias' has NaN at element 7",
                       NULL);
  model_free(a);
  ts_rmtree(dir);
}

static void ed_meta_n_layer_wraps(cJSON *h) {
  cJSON *m = cJSON_GetObjectItem(h, "__metadata__");
  cJSON_ReplaceItemInObject(m, "n_layer", cJSON_CreateString("4294967298"));
}
static void ed_no_meta(cJSON *h) {
  cJSON_DeleteItemFromObject(h, "__metadata__");
}
static void ed_offsets_fractional(cJSON *h) {
  const cJSON *of = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "ln_f.bias"), "data_offsets");
  double b = cJSON_GetArrayItem(of, 0)->valuedouble, e = cJSON_GetArrayItem(of, 1)->valuedouble;
  set_offsets(h, "ln_f.bias", b + 0.5, e + 0.5);
}
static void ed_offsets_overlap(cJSON *h) {
  /* ln_f.bias read from ln_f.weight's bytes (both 8 floats) */
  const cJSON *of = cJSON_GetObjectItem(cJSON_GetObjectItem(h, "ln_f.weight"), "data_offsets");
  set_offsets(h, "ln_f.bias", cJSON_GetArrayItem(of, 0)->valuedouble,
              cJSON_GetArrayItem(of, 1)->valuedouble);
}
static void ed_thousand_extra(cJSON *h) {
  for (int i = 0; i < 1000; i++) {
    char name[32];
    snprintf(name, sizeof name, "extra.%d", i);
    cJSON *e = cJSON_AddObjectToObject(h, name);
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber(0));
    cJSON *of = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(of, cJSON_CreateNumber(0));
    cJSON_AddItemToArray(of, cJSON_CreateNumber(0));
  }
}

/* Numbers in a safetensors header are range-checked: __metadata__'s
 * "4294967298" was read as 2 layers (strtol, then a cast to int) and a
 * config.json's 1e20 cast to int (undefined); fractional data_offsets were
 * truncated and overlapping ones let one tensor be read from another's
 * bytes. Extra tensors are warned about by name 5 times, then counted. */
Test(gpt2_ckpt, safetensors_numbers_range_checked) {
  char dir[256], path[300], bad[300], cjson[300];
  ts_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/good.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/model.safetensors", dir);
  snprintf(cjson, sizeof cjson, "%s/config.json", dir);
  gpt2_config cfg = cfg_small(); /* 2 layers: the wrapped 4294967298 */
  model_t *a = tu_model(&cfg, 8), *b = NULL;
  dfpo_err err;
  dfpo_err_clear(&err);
  cr_assert_eq(model_export_safetensors(a, path, 0, &err), 0, "%s", err.msg);
  st_edit(path, bad, ed_meta_n_layer_wraps);
  tu_expect_load_fails(bad, "\"n_layer\" is \"4294967298\", not an integer", NULL);
  st_edit(path, bad, ed_no_meta);
  ts_write_text(cjson, "{\"n_layer\": 1e20, \"n_head\": 2, \"n_embd\": 8, \"vocab_size\": 40, "
                       "\"n_positions\": 16}");
  tu_expect_load_fails(bad, "config.json: \"n_layer\" is 1e+20, not an integer", NULL);
  ts_write_text(cjson, "{\"n_layer\": 2, \"n_head\": 2.5, \"n_embd\": 8, \"vocab_size\": 40, "
                       "\"n_positions\": 16}");
  tu_expect_load_fails(bad, "\"n_head\" is 2.5", NULL);
  ts_write_text(cjson, "{\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 8, \"vocab_size\": 40, "
                       "\"n_positions\": 16}");
  cr_assert_eq(model_load(&b, bad, &err), 0, "%s", err.msg); /* the same file, a good config */
  tu_same_params(a, b);
  model_free(b);
  remove(cjson);
  st_edit(path, bad, ed_offsets_fractional);
  tu_expect_load_fails(bad, "'ln_f.bias': data_offsets must be two integers", NULL);
  st_edit(path, bad, ed_offsets_overlap);
  tu_expect_load_fails(bad, "overlap", "'ln_f.bias'");
  /* 1000 extra (empty) tensors: 5 warnings by name and one count, through
   * `dfpo perplexity`, whose stderr the test reads */
  st_edit(path, bad, ed_thousand_extra);
  char toks[300];
  snprintf(toks, sizeof toks, "%s/t.txt", dir);
  ts_write_text(toks, "1 2 3\n");
  ts_run r;
  ts_dfpo(&r, "perplexity", "--model", bad, "--tokens", toks, "--no-bos", NULL);
  cr_expect_eq(r.status, 0, "%s", r.err);
  int lines = 0;
  for (const char *s = r.err; (s = strstr(s, "is not part of the model")) != NULL; s++)
    lines++;
  cr_expect_eq(lines, 5, "%d warnings by name: %.300s", lines, r.err);
  cr_expect(strstr(r.err, "995 more tensors that are not part of the model") != NULL, "%.2000s",
            r.err);
  ts_run_free(&r);
  model_free(a);
  ts_rmtree(dir);
}
