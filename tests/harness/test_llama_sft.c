/* dfpo train's SFT of a Llama policy against PyTorch: the texts start with
 * the tokenizer's own <s> (trn_sft_tokenize's r->bos), as transformers'
 * tokenizer(text) encodes them with add_bos_token, and the loss is the mean
 * next-token cross-entropy over every token after it.
 *
 * tests/trainer/tok_llama_reference.py's first form writes a random tiny
 * grouped-query Llama with its SentencePiece tokenizer.model; an SFT cell
 * of the synthetic task (3 training items in one batch, one epoch) trains
 * it, and train.jsonl's first loss is the loss of the untouched model (the
 * step's loss is taken before its update). The reference's third form
 * computes that loss in double over the same training references (the
 * synthetic task's train split, written here with task_write_corpus from
 * the parameters the run is given): <s> + sp.encode's ids, cut to the
 * context + 1 tokens. They agree within 1e-6 (relative; measured 6.99176836
 * against 6.99176834). With </s> first instead (the pad, which dfpo train
 * put first before e90431d) the reference gives 7.01090214, and the old
 * code's 7.0109024 fails the test.
 * Skipped, saying why, when /usr/bin/python3 lacks torch or sentencepiece. */
#include "harness/task.h"
#include "tests/support/support.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(llama_sft, the_first_loss_is_pytorchs_over_s_and_each_reference, .timeout = 300) {
  if (!ts_python_has("torch, sentencepiece"))
    cr_skip_test("/usr/bin/python3 lacks torch or sentencepiece (Debian: python3-torch, "
                 "python3-sentencepiece): no reference to compare with");
  char dir[256], refjson[300], llama[300], texts[300], sftjson[300], out[300], logp[400];
  ts_tmpdir(dir, sizeof dir);
  snprintf(refjson, sizeof refjson, "%s/ref.json", dir);
  snprintf(llama, sizeof llama, "%s/llama", dir);
  snprintf(texts, sizeof texts, "%s/train.txt", dir);
  snprintf(sftjson, sizeof sftjson, "%s/sft.json", dir);
  snprintf(out, sizeof out, "%s/runs", dir);
  ts_run r;
  char *mk[] = {"/usr/bin/python3", DFPO_SOURCE_DIR "/tests/trainer/tok_llama_reference.py", dir,
                refjson, NULL};
  ts_run_cmd(&r, mk, NULL, NULL);
  cr_assert_eq(r.status, 0, "the reference script: %s", r.err);
  ts_run_free(&r);

  /* the run's training references: the synthetic task with the
   * parameters given to the run below */
  task t;
  dfpo_err err;
  task_synth_params p = task_synth_defaults();
  p.language_seed = 11;
  p.data_seed = 12;
  p.n[TASK_TRAIN] = 3;
  p.n[TASK_VALIDATION] = p.n[TASK_TEST] = 2;
  cr_assert_eq(task_synth_init(&t, &p, &err), 0, "%s", err.msg);
  cr_assert_eq(task_write_corpus(&t, TASK_TRAIN, texts, &err), 0, "%s", err.msg);
  task_free(&t);

  ts_dfpo(&r, "train", "--task", "synthetic", "--algo", "sft", "--model", llama, "--seed", "1",
          "--out", out, "--set", "train.iterations=1", "--set", "train.batch_size=3", "--set",
          "train.lr=1e-3", "--set", "eval.num_beams=1", "--set", "generation.max_new_tokens=2",
          "--set", "generation.min_new_tokens=2", "--set", "task.max_prompt_tokens=8", "--set",
          "task.synthetic.language_seed=11", "--set", "task.synthetic.data_seed=12", "--set",
          "task.synthetic.n_train=3", "--set", "task.synthetic.n_validation=2", "--set",
          "task.synthetic.n_test=2", NULL);
  cr_assert_eq(r.status, 0, "train: %s", r.err);
  ts_run_free(&r);

  char *sf[] = {"/usr/bin/python3",
                DFPO_SOURCE_DIR "/tests/trainer/tok_llama_reference.py",
                "sft",
                dir,
                texts,
                sftjson,
                NULL};
  ts_run_cmd(&r, sf, NULL, NULL);
  cr_assert_eq(r.status, 0, "the reference's sft form: %s", r.err);
  ts_run_free(&r);
  cJSON *ref = ts_read_json(sftjson);
  double want = cJSON_GetObjectItemCaseSensitive(ref, "loss")->valuedouble;
  double after_eos = cJSON_GetObjectItemCaseSensitive(ref, "loss_after_eos")->valuedouble;
  cJSON_Delete(ref);

  snprintf(logp, sizeof logp, "%s/default/synthetic/sft/seed-1/train.jsonl", out);
  char *log = ts_slurp(logp);
  cr_assert_not_null(log, "%s", logp);
  char *first = strtok(log, "\n");
  cJSON *line = first ? cJSON_Parse(first) : NULL;
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(line, "loss");
  cr_assert(cJSON_IsNumber(l), "train.jsonl's first line has no loss: %s", first ? first : "");
  double got = l->valuedouble;
  cr_expect(fabs(got - want) <= 1e-6 * want,
            "SFT's first loss %.9g, PyTorch over <s> + each reference %.9g (after </s>: %.9g)", got,
            want, after_eos);
  cr_expect(fabs(after_eos - want) > 1e-4 * want,
            "the reference cannot tell <s> (%.9g) from </s> (%.9g) first", want, after_eos);
  cJSON_Delete(line);
  free(log);
  ts_rmtree(dir);
}
