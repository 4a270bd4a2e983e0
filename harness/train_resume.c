/* dfpo train's resumable checkpoint (checkpoint/resume/): the models with
 * their AdamW states and state.json, written last (docs/algorithms.md). */
#include "harness/train_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex_u64(cJSON *o, const char *key, uint64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
  cJSON_AddStringToObject(o, key, buf);
}

static int get_u64(const cJSON *o, const char *key, uint64_t *v) {
  const cJSON *it = cJSON_GetObjectItem(o, key);
  if (!cJSON_IsString(it))
    return -1;
  char *end;
  *v = (uint64_t)strtoull(it->valuestring, &end, 16);
  return *end ? -1 : 0;
}

/* o[key] as an integer in [lo, 2^53] (what a double holds exactly); -1
 * when it is absent, not a number, fractional or out of range, so that
 * 1e300 never reaches a conversion to an integer type. */
static int get_int(const cJSON *o, const char *key, double lo, int64_t *v) {
  const cJSON *it = cJSON_GetObjectItem(o, key);
  if (!cJSON_IsNumber(it))
    return -1;
  double d = it->valuedouble;
  if (!(d >= lo && d <= 9007199254740992.0) || d != floor(d))
    return -1;
  *v = (int64_t)d;
  return 0;
}

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

static double bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

void trn_resume_path(const trn_run *r, char *buf, size_t n, const char *what, int64_t it) {
  if (it < 0)
    snprintf(buf, n, "%s/checkpoint/resume/%s", r->dir, what);
  else
    snprintf(buf, n, "%s/checkpoint/resume/%s-%lld.ckpt", r->dir, what, (long long)it);
}

void trn_resume_remove(const trn_run *r, int64_t it) {
  static const char *const what[] = {"policy", "value", "mask"};
  char path[4400];
  for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
    trn_resume_path(r, path, sizeof path, what[i], it);
    remove(path);
  }
}

/* Writes the models of iteration ls->next_it, then state.json (atomically,
 * last: it names the iteration, so a kill before it keeps the previous
 * checkpoint whole), then removes the previous checkpoint's models. */
int trn_resume_save(trn_run *r, const trn_loop_state *ls, dfpo_err *err) {
  char path[4400];
  int rc;
  trn_resume_path(r, path, sizeof path, "", -1);
  if ((rc = dfpo_mkdirs(path, err)))
    return rc;
  trn_resume_path(r, path, sizeof path, "policy", ls->next_it);
  if ((rc = model_save(r->policy, path, 1, err)))
    return rc;
  if (r->value) {
    trn_resume_path(r, path, sizeof path, "value", ls->next_it);
    if ((rc = model_save(r->value, path, 1, err)))
      return rc;
  }
  model_t *mask = r->rl ? rl_trainer_mask_model(r->rl) : NULL;
  if (mask) {
    /* a LoRA policy's mask model is a view of its base: its adapters alone */
    trn_resume_path(r, path, sizeof path, "mask", ls->next_it);
    if ((rc = model_lora_rank(mask) ? model_save_tensors(mask, path, err)
                                    : model_save(mask, path, 0, err)))
      return rc;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "next_iteration", (double)ls->next_it);
  cJSON_AddNumberToObject(o, "best_iteration", ls->best_iter);
  hex_u64(o, "best_bits", dbits(ls->best));
  hex_u64(o, "data_state", ls->data.state);
  hex_u64(o, "data_inc", ls->data.inc);
  cJSON_AddNumberToObject(o, "log_bytes", (double)ls->log_bytes);
  if (r->rl) {
    rl_trainer_state ts;
    rl_trainer_get_state(r->rl, &ts);
    hex_u64(o, "beta_bits", dbits(ts.beta));
    cJSON_AddNumberToObject(o, "rl_iterations", (double)ts.iterations);
    hex_u64(o, "rng_state", ts.rng.state);
    hex_u64(o, "rng_inc", ts.rng.inc);
  }
  trn_resume_path(r, path, sizeof path, "state.json", -1);
  rc = cfg_json_write(path, o, err);
  cJSON_Delete(o);
  if (rc)
    return rc;
  if (r->resume_prev >= 0 && r->resume_prev != ls->next_it)
    trn_resume_remove(r, r->resume_prev);
  r->resume_prev = ls->next_it;
  return DFPO_OK;
}

/* The checkpoint at path (parameters and AdamW state) read into the model
 * in place, in its precision (a LoRA base kept in 16 bits is saved
 * widened): no second copy, and its views (a LoRA policy's reference) stay
 * as they are; loaded anew where there is no model yet. */
static int read_in(model_t **m, const char *path, dfpo_err *err) {
  return *m ? model_load_into(*m, path, err) : model_load(m, path, err);
}

/* Continues from checkpoint/resume/state.json when there is one: *found
 * says so. The policy and value model (with their AdamW states) and NLPO's
 * mask model come back, the trainer is rebuilt over them with its state. */
int trn_resume_load(trn_run *r, trn_loop_state *ls, int *found, dfpo_err *err) {
  char path[4400];
  *found = 0;
  trn_resume_path(r, path, sizeof path, "state.json", -1);
  char *text;
  size_t len;
  if (dfpo_read_file(path, &text, &len, NULL) != DFPO_OK)
    return DFPO_OK;
  cJSON *o = cJSON_ParseWithLength(text, len);
  free(text);
  uint64_t best, ds, di, beta = 0, rs = 0, ri = 0;
  int64_t nx, bi, lb, rli = 0;
  int bad = !o || get_int(o, "next_iteration", 0, &nx) || get_int(o, "best_iteration", -1, &bi) ||
            bi > INT_MAX || get_int(o, "log_bytes", 0, &lb) || get_u64(o, "best_bits", &best) ||
            get_u64(o, "data_state", &ds) || get_u64(o, "data_inc", &di);
  if (!bad && r->rl)
    bad = get_int(o, "rl_iterations", 0, &rli) || get_u64(o, "beta_bits", &beta) ||
          get_u64(o, "rng_state", &rs) || get_u64(o, "rng_inc", &ri);
  if (bad) {
    cJSON_Delete(o);
    return dfpo_err_set(err, DFPO_EDATA, "%s: not a resumable-checkpoint state", path);
  }
  ls->next_it = nx;
  ls->best_iter = (int)bi;
  ls->best = bitsd(best);
  ls->data.state = ds;
  ls->data.inc = di;
  ls->log_bytes = lb;
  rl_trainer_state ts = {bitsd(beta), rli, {rs, ri}};
  cJSON_Delete(o);
  int rc, rl = r->rl != NULL;
  /* the trainer is made again over the models read in, with its state */
  rl_trainer_free(r->rl);
  r->rl = NULL;
  trn_resume_path(r, path, sizeof path, "policy", ls->next_it);
  if ((rc = read_in(&r->policy, path, err)))
    return rc;
  if (rl) {
    /* a value head on the policy's trunk (r->value NULL) came back with
     * the policy */
    trn_resume_path(r, path, sizeof path, "value", ls->next_it);
    if (r->value && (rc = read_in(&r->value, path, err)))
      return rc;
    if ((rc = rl_trainer_new(&r->rl, r->policy, r->ref, r->value ? r->value : r->policy, &r->set.rl,
                             (uint64_t)r->set.seed, err)))
      return rc;
    rl_trainer_set_state(r->rl, &ts);
    model_t *mask = rl_trainer_mask_model(r->rl);
    if (mask) {
      trn_resume_path(r, path, sizeof path, "mask", ls->next_it);
      /* a LoRA view's adapters alone; else a whole model (as checkpoints
       * written before the adapters were saved alone hold it too: a LoRA
       * view takes the adapters of it) */
      if (model_lora_rank(mask))
        rc = model_path_is_native(path) ? model_load_adapters(mask, path, err)
                                        : model_load_tensors(mask, path, err);
      else
        rc = model_load_into(mask, path, err);
      if (rc)
        return rc;
    }
  }
  if ((rc = trn_memory_apply(r, err)))
    return rc;
  r->resume_prev = ls->next_it;
  *found = 1;
  return DFPO_OK;
}
