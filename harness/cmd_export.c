/* dfpo export: a policy as a Hugging Face GPT-2 (or T5) folder. The files are
 * trainer/'s (model_export_hf); this command finds the tokenizer and
 * stages the folder so that FOLDER is either what it was before or the
 * whole export, never half of one. */
#include "harness/cli.h"
#include "harness/suite.h"
#include "trainer/model.h"
#include "trainer/tok.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char export_usage[] =
    "Usage: dfpo export --model PATH --out FOLDER [--tokenizer DIR] [--adapters DIR]\n"
    "                   [--adapters-only] [--force]\n"
    "\n"
    "Writes a GPT-2 policy as a Hugging Face model folder that transformers'\n"
    "GPT2LMHeadModel.from_pretrained and GPT2TokenizerFast.from_pretrained read:\n"
    "model.safetensors (float32, GPT2LMHeadModel's names: transformer.wte.weight,\n"
    "transformer.h.N.attn.c_attn.weight as Conv1D [in, out], ...; lm_head.weight\n"
    "is tied to transformer.wte.weight and so not stored), config.json (the\n"
    "model's vocab_size, n_positions, n_embd, n_layer, n_head, layer_norm_epsilon;\n"
    "bos_token_id and eos_token_id = the tokenizer's <|endoftext|> id) and the\n"
    "tokenizer: vocab.json, merges.txt, tokenizer_config.json and\n"
    "special_tokens_map.json (<|endoftext|> as bos, eos and unk). Every dfpo\n"
    "command that takes a model takes the folder back (--model FOLDER).\n"
    "\n"
    "A T5 (a T5 checkpoint or folder, with its SentencePiece tokenizer) is\n"
    "written as T5ForConditionalGeneration's folder instead: model.safetensors\n"
    "(shared.weight, encoder.block.N.layer.0.SelfAttention.q.weight, ...;\n"
    "lm_head.weight when untied, no embed_tokens aliases), config.json (d_model,\n"
    "d_kv, d_ff, num_heads, num_layers, num_decoder_layers, the buckets,\n"
    "feed_forward_proj, tie_word_embeddings, ...) and spiece.model,\n"
    "tokenizer_config.json (T5Tokenizer, extra_ids), special_tokens_map.json.\n"
    "\n"
    "A rotary decoder (GPT-J, GPT-NeoX / Pythia, Llama) is written with its\n"
    "family's Hugging Face names (transformer.h.N.attn.q_proj.weight,\n"
    "gpt_neox.layers.N.attention.query_key_value.weight in its per-head order,\n"
    "model.layers.N.self_attn.q_proj.weight, ...) and config.json (model_type\n"
    "gptj, gpt_neox or llama), docs/rotary.md, and the tokenizer's files: GPT-2's\n"
    "BPE files, or a Llama's tokenizer.model, tokenizer_config.json (its\n"
    "add_bos_token and add_eos_token) and special_tokens_map.json; config.json's\n"
    "bos_token_id is the tokenizer's own start where it has one (Llama's <s>),\n"
    "else its <|endoftext|>.\n"
    "\n"
    "A value or classification head (a value model's, a judge's) is no part of\n"
    "GPT2LMHeadModel or T5ForConditionalGeneration: it is left out with a\n"
    "warning, and the folder holds the language model under it.\n"
    "\n"
    "A policy with LoRA adapters (a `dfpo train` run with model.lora_rank > 0)\n"
    "is written merged: each adapted weight as W + (lora_alpha / lora_rank) B A,\n"
    "a plain folder of its architecture that computes what the adapted policy\n"
    "computes (and that dfpo train takes as a base model). With --adapters-only\n"
    "the folder holds the adapters alone as peft's PeftModel.save_pretrained\n"
    "writes them:\n"
    "adapter_model.safetensors (base_model.model.transformer.h.N.attn.c_attn.\n"
    "lora_A.weight [r, in], .lora_B.weight [out, r], ...; a rotary decoder's:\n"
    "base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight, ...) and\n"
    "adapter_config.json (peft_type LORA, r, lora_alpha, target_modules,\n"
    "fan_in_fan_out true for GPT-2's Conv1D, false for the rotary decoders), for\n"
    "PeftModel.from_pretrained over the base model the run started from; no\n"
    "tokenizer is needed or written.\n"
    "\n"
    "--adapters DIR reads such a peft folder (adapter_config.json and\n"
    "adapter_model.safetensors, from dfpo or from peft) onto a model without\n"
    "adapters first (GPT-2, GPT-J, GPT-NeoX, Llama): its r, lora_alpha and\n"
    "target_modules (matched as peft matches them), the same on every layer,\n"
    "and use_rslora (the scale lora_alpha / sqrt(r)); peft's other options\n"
    "(use_dora, a bias, modules_to_save, ...) are refused by name.\n"
    "So `--model BASE --adapters DIR` writes the base with the adapters merged.\n"
    "\n"
    "The folder is written as FOLDER.tmp.<pid> beside it and renamed when\n"
    "complete; a failure leaves FOLDER as it was. An existing FOLDER is an\n"
    "error unless --force, which replaces it (a file there is never replaced).\n"
    "\n"
    "Options:\n"
    "  --model PATH     the policy: a native checkpoint (a run's\n"
    "                   checkpoint/best.ckpt, pretrain's checkpoint.bin), a\n"
    "                   model.safetensors, a Hugging Face folder, or a hub\n"
    "                   name OWNER/NAME[@REVISION] (fetched into the cache\n"
    "                   as `dfpo fetch` does)\n"
    "  --out FOLDER     the folder to write\n"
    "  --tokenizer DIR  its tokenizer (encoder.json + vocab.bpe, Hugging Face's\n"
    "                   files, or a folder with T5's spiece.model). Default: the\n"
    "                   model's own folder when it is a Hugging Face folder with\n"
    "                   tokenizer files, else the tokenizer.path of the run or\n"
    "                   pretraining config.json beside the checkpoint or one\n"
    "                   folder up\n"
    "  --adapters DIR   peft's LoRA adapter folder (or its hub name OWNER/NAME),\n"
    "                   read onto the model (above)\n"
    "  --adapters-only  a LoRA policy's adapters alone, peft's files (above)\n"
    "  --force          replace FOLDER when it exists\n"
    "  -h, --help       show this help\n";

/* The tokenizer.path of a dfpo config.json in the checkpoint's folder or
 * the one above it (a run folder: RUN/config.json and
 * RUN/checkpoint/best.ckpt; pretraining: OUT/config.json beside
 * OUT/checkpoint.bin), when it names a folder; into buf, else "". */
static void run_tokenizer(const char *model, char *buf, size_t n) {
  buf[0] = 0;
  char dir[4200];
  snprintf(dir, sizeof dir, "%s", model);
  for (int up = 0; up < 2 && !buf[0]; up++) {
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir)
      *slash = 0;
    else if (!slash)
      snprintf(dir, sizeof dir, "%s", up ? ".." : ".");
    char path[4300], *text = NULL;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (dfpo_read_file(path, &text, NULL, NULL) != DFPO_OK)
      continue;
    cJSON *o = cJSON_Parse(text);
    const cJSON *p =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "tokenizer"), "path");
    if (cJSON_IsString(p) && p->valuestring[0] && model_path_is_folder(p->valuestring)) {
      snprintf(buf, n, "%s", p->valuestring);
      dfpo_info("export: the tokenizer %s names: %s", path, buf);
    }
    cJSON_Delete(o);
    free(text);
  }
}

/* Writes the folder into tmp and renames it to out (out, when it exists
 * and force is set, is renamed away first and removed last). */
static int stage(const model_t *m, const tok_tokenizer *tok, const char *out, int force,
                 int adapters_only, dfpo_err *err) {
  char tmp[4200], old[4200];
  int rc;
  if ((rc = dfpo_path_fmt(tmp, sizeof tmp, err, "%s.tmp.%ld", out, (long)getpid())) ||
      (rc = dfpo_path_fmt(old, sizeof old, err, "%s.old.%ld", out, (long)getpid())) ||
      (rc = suite_rmtree(tmp, err)))
    return rc;
  if (mkdir(tmp, 0777) != 0)
    return dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot create", tmp);
  if ((rc = adapters_only ? model_export_adapters(m, tmp, err)
                          : model_export_hf(m, tok, tmp, err))) {
    dfpo_err e2;
    suite_rmtree(tmp, &e2);
    return rc;
  }
  struct stat st;
  int exists = stat(out, &st) == 0;
  if (exists && !force) { /* appeared while exporting */
    dfpo_err e2;
    suite_rmtree(tmp, &e2);
    return dfpo_err_set(err, DFPO_EUSAGE, "%s exists: give --force to replace it", out);
  }
  if (exists && rename(out, old) != 0) {
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot move it aside", out);
  } else if (rename(tmp, out) != 0) {
    rc = dfpo_err_errno(err, DFPO_ERUNTIME, errno, "%s: cannot rename %s to it", out, tmp);
    if (exists)
      rename(old, out); /* put the old one back */
  }
  dfpo_err e2;
  if (rc) {
    suite_rmtree(tmp, &e2);
    return rc;
  }
  dfpo_fsync_parent(out);
  if (exists && suite_rmtree(old, &e2))
    dfpo_warn("export: %s", e2.msg);
  return DFPO_OK;
}

int cmd_export(int argc, char **argv) {
  static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"tokenizer", required_argument, NULL, 'z'},
                                       {"force", no_argument, NULL, 'f'},
                                       {"adapters-only", no_argument, NULL, 'a'},
                                       {"adapters", required_argument, NULL, 'A'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *model = NULL, *out = NULL, *tokdir = NULL, *adapters = NULL;
  int force = 0, adapters_only = 0, c;
  cli_reset_getopt();
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'm':
      model = optarg;
      break;
    case 'o':
      out = optarg;
      break;
    case 'z':
      tokdir = optarg;
      break;
    case 'f':
      force = 1;
      break;
    case 'a':
      adapters_only = 1;
      break;
    case 'A':
      adapters = optarg;
      break;
    case 'h':
      fputs(export_usage, stdout);
      return DFPO_OK;
    default:
      return cli_bad_option("export", argc, argv, c);
    }
  }
  if (optind < argc)
    return cli_usage_error("export", "unexpected argument '%s'", argv[optind]);
  if (!model || !out || !out[0])
    return cli_usage_error("export", "--model and --out are required");
  struct stat st;
  if (stat(out, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return cli_usage_error("export", "%s exists and is not a folder: not replaced", out);
    if (!force)
      return cli_usage_error("export", "%s exists: give --force to replace it", out);
  }
  dfpo_err err;
  dfpo_err_clear(&err);
  /* a hub name becomes its cache folder first: a folder brings its tokenizer */
  char mpath[4096];
  int rc;
  if ((rc = cli_model_path(model, mpath, sizeof mpath, &err)))
    return cli_fail(&err);
  model = mpath;
  char found[4200];
  model_t *m = NULL;
  tok_tokenizer *tok = NULL;
  if (adapters_only) { /* peft's adapter files: no tokenizer */
    if (!(rc = cli_load_model(&m, model, OPS_DTYPE_F32, adapters, &err)) &&
        !(rc = stage(m, NULL, out, force, 1, &err)))
      dfpo_info("export: wrote %s (the LoRA adapters alone: rank %d)", out, model_lora_rank(m));
    model_free(m);
    return rc ? cli_fail(&err) : DFPO_OK;
  }
  tokdir = cli_model_tokenizer(model, tokdir);
  if (!tokdir) {
    run_tokenizer(model, found, sizeof found);
    tokdir = found[0] ? found : NULL;
  }
  if (!tokdir)
    return cli_usage_error("export",
                           "no tokenizer: give --tokenizer DIR (the model is no Hugging Face "
                           "folder with tokenizer files, and no run config beside it names one)");
  if (!(rc = cli_load_model(&m, model, OPS_DTYPE_F32, adapters, &err)) &&
      !(rc = tok_load(&tok, tokdir, &err)) && !(rc = stage(m, tok, out, force, 0, &err))) {
    dfpo_info("export: wrote %s (vocabulary %d, %d positions, end-of-text id %d)", out,
              model_get_config(m)->vocab_size, model_get_config(m)->n_ctx, (int)tok_eot_id(tok));
    if (model_lora_rank(m))
      dfpo_info("export: the LoRA adapters (rank %d) are merged into the weights",
                model_lora_rank(m));
  }
  tok_free(tok);
  model_free(m);
  return rc ? cli_fail(&err) : DFPO_OK;
}
