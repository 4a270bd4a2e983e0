/* Internal to harness/: the algorithms of `dfpo train`, named in one table.
 *
 * Prefix: alg_. Every place in harness/ that spells an algorithm's name (the
 * config schema's choices, suites, the train command, bench, report) takes
 * it from here; trainer/'s RL_* enum is reached from it through alg_rl()
 * alone. Names are static strings; nothing here allocates.
 */
#ifndef DFPO_HARNESS_ALGO_H
#define DFPO_HARNESS_ALGO_H

/* The algorithms, in the order suites list them by default. */
typedef enum { ALG_ZERO_SHOT, ALG_SFT, ALG_PPO, ALG_NLPO, ALG_DFPO, ALG_COUNT } alg_id;

/* The names of alg_id's values in its order, `first` before the first and
 * `sep` between two: string literals for static tables, e.g.
 * ALG_NAMES("", "|") is "zero-shot|sft|ppo|nlpo|dfpo". algo.c builds its
 * table from the same macro, so the two cannot drift apart. */
#define ALG_NAMES(first, sep) first "zero-shot" sep "sft" sep "ppo" sep "nlpo" sep "dfpo"
/* "zero-shot|sft|ppo|nlpo|dfpo": the config schema's choices and messages. */
#define ALG_CHOICES ALG_NAMES("", "|")
/* ["zero-shot","sft","ppo","nlpo","dfpo"] as JSON: suite.algos' default. */
#define ALG_JSON_LIST "[" ALG_NAMES("\"", "\",\"") "\"]"

/* The name of an algorithm ("?" for a value outside the enum). */
const char *alg_name(alg_id a);
/* Its name in tables and figures: "Zero-shot", "SFT", "PPO", "NLPO",
 * "DfPO" ("?" outside the enum). */
const char *alg_display(alg_id a);
/* The algorithm called name: 0 and *out, or -1 (and *out untouched) when
 * name is none of them. */
int alg_parse(const char *name, alg_id *out);
/* The trainer's RL_PPO, RL_NLPO or RL_DFPO for ppo, nlpo and dfpo; -1 for
 * zero-shot and sft, which rl_iterate does not run. */
int alg_rl(alg_id a);

#endif
