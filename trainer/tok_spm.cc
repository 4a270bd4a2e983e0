// The bridge from C to Debian's libsentencepiece (trainer/tok_spm.h): the
// library has a C++ API only. Nothing else of the project is C++; every
// call catches what the library might throw and reports it as a message.
#include "trainer/tok_spm.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

struct tok_spm {
  sentencepiece::SentencePieceProcessor sp;
};

static int fail(char *msg, size_t msgn, const std::string &what) {
  if (msg && msgn)
    std::snprintf(msg, msgn, "%s", what.c_str());
  return -1;
}

extern "C" int tok_spm_load(tok_spm **out, const char *path, char *msg, size_t msgn) {
  *out = nullptr;
  try {
    tok_spm *s = new tok_spm;
    auto st = s->sp.Load(path);
    if (!st.ok()) {
      delete s;
      return fail(msg, msgn, st.ToString());
    }
    *out = s;
    return 0;
  } catch (const std::exception &e) {
    return fail(msg, msgn, e.what());
  }
}

extern "C" void tok_spm_free(tok_spm *s) {
  delete s;
}

extern "C" int tok_spm_size(const tok_spm *s) {
  return s->sp.GetPieceSize();
}

extern "C" int tok_spm_piece_id(const tok_spm *s, const char *p, size_t len) {
  try {
    std::string piece(p, len);
    int id = s->sp.PieceToId(piece);
    return id >= 0 && s->sp.IdToPiece(id) == piece ? id : -1;
  } catch (const std::exception &) {
    return -1;
  }
}

extern "C" const char *tok_spm_piece(const tok_spm *s, int id, size_t *len) {
  const std::string &p = s->sp.IdToPiece(id);
  *len = p.size();
  return p.c_str();
}

extern "C" int tok_spm_encode(const tok_spm *s, const char *text, size_t len, int **ids, size_t *n,
                              char *msg, size_t msgn) {
  *ids = nullptr;
  *n = 0;
  try {
    std::vector<int> v;
    auto st = s->sp.Encode(absl::string_view(text, len), &v);
    if (!st.ok())
      return fail(msg, msgn, st.ToString());
    int *a = static_cast<int *>(std::malloc((v.size() ? v.size() : 1) * sizeof(int)));
    if (!a)
      return fail(msg, msgn, "out of memory");
    if (!v.empty())
      std::memcpy(a, v.data(), v.size() * sizeof(int));
    *ids = a;
    *n = v.size();
    return 0;
  } catch (const std::exception &e) {
    return fail(msg, msgn, e.what());
  }
}

extern "C" int tok_spm_decode(const tok_spm *s, const int *ids, size_t n, char **text, size_t *len,
                              char *msg, size_t msgn) {
  *text = nullptr;
  *len = 0;
  try {
    std::vector<int> v(ids, ids + n);
    std::string out;
    auto st = s->sp.Decode(v, &out);
    if (!st.ok())
      return fail(msg, msgn, st.ToString());
    char *a = static_cast<char *>(std::malloc(out.size() + 1));
    if (!a)
      return fail(msg, msgn, "out of memory");
    std::memcpy(a, out.data(), out.size());
    a[out.size()] = '\0';
    *text = a;
    *len = out.size();
    return 0;
  } catch (const std::exception &e) {
    return fail(msg, msgn, e.what());
  }
}

extern "C" int tok_spm_serialize(const tok_spm *s, char **data, size_t *len, char *msg,
                                 size_t msgn) {
  *data = nullptr;
  *len = 0;
  try {
    std::string out = s->sp.serialized_model_proto();
    if (out.empty())
      return fail(msg, msgn, "the SentencePiece model serializes to nothing");
    char *a = static_cast<char *>(std::malloc(out.size()));
    if (!a)
      return fail(msg, msgn, "out of memory");
    std::memcpy(a, out.data(), out.size());
    *data = a;
    *len = out.size();
    return 0;
  } catch (const std::exception &e) {
    return fail(msg, msgn, e.what());
  }
}

extern "C" int tok_spm_train(const char *input, const char *prefix, int vocab_size, char *msg,
                             size_t msgn) {
  try {
    // T5's ids (pad 0, </s> 1, <unk> 2, no <s>); one thread, so that the
    // model depends on the corpus and the settings alone
    std::unordered_map<std::string, std::string> args = {
        {"input", input},
        {"model_prefix", prefix},
        {"vocab_size", std::to_string(vocab_size)},
        {"model_type", "unigram"},
        {"pad_id", "0"},
        {"eos_id", "1"},
        {"unk_id", "2"},
        {"bos_id", "-1"},
        {"character_coverage", "1.0"},
        {"hard_vocab_limit", "false"},
        {"num_threads", "1"},
        {"minloglevel", "2"}};
    auto st = sentencepiece::SentencePieceTrainer::Train(args);
    if (!st.ok())
      return fail(msg, msgn, st.ToString());
    return 0;
  } catch (const std::exception &e) {
    return fail(msg, msgn, e.what());
  }
}
